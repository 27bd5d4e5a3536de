"""The health of a process's background loops, as its status and health routes report it.

Every edge and cloud process runs its periodic work (sync, desired-state poll, heartbeat,
rollout and retraining ticks) under one supervisor; this is what an operator sees of each loop.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

LoopState = Literal["waiting", "running", "backing_off", "finished", "stopped"]


class LoopHealth(BaseModel):
    """One supervised loop: is it working, how often it failed, and what failed last."""

    name: str
    state: LoopState
    restarts: int = 0  # times it was started again after a failure
    failures: int = 0  # failures since the process started
    consecutive_failures: int = 0  # since its last success (0: the last run succeeded)
    last_error: str | None = None  # "TypeName: message" of the latest failure
    last_error_at: float | None = None  # unix time
    last_success_at: float | None = None  # unix time of its latest successful run
    retry_in_s: float | None = None  # while backing off: the delay drawn for the next run


class CloudHealth(BaseModel):
    """The cloud process's own health: its version and its background loops."""

    version: str
    loops: list[LoopHealth]
