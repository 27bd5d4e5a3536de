"""Login throttling: password guessing gets slower with every miss, per user and per address.

After ``free_failures`` misses in a row for a key (a username, or a client address), the key
is locked for ``base_s`` seconds, doubling with each further miss up to ``max_s``. A success
clears the user's key, not the address's (one right password must not unlock a guessing
address). Keyed by address too, so spraying many usernames from one place is slowed as well.
``LoginThrottle`` keeps its state in memory (one process); the cloud counts in its metadata
store instead (``cloud.people.login_throttle``), so several replicas throttle as one. Both follow
the ``Throttle`` protocol and the ``lockout_s`` rule. The clock is passed in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


class Throttle(Protocol):
    """What a login asks of a throttle: how long to wait, and to count a miss or a success."""

    def retry_after(self, keys: list[str], now: float) -> float: ...

    def failure(self, keys: list[str], now: float) -> float: ...

    def success(self, key: str) -> None: ...


def lockout_s(failures: int, free_failures: int, base_s: float, max_s: float) -> float:
    """How long a key is locked after its ``failures``-th miss in a row (0: not locked)."""
    over = failures - free_failures
    return 0.0 if over < 0 else min(base_s * 2.0**over, max_s)


@dataclass
class _State:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        free_failures: int = 5,
        base_s: float = 1.0,
        max_s: float = 15 * 60.0,
        forget_after_s: float = 60 * 60.0,
        max_keys: int = 100_000,
    ) -> None:
        self.free_failures = free_failures
        self.base_s = base_s
        self.max_s = max_s
        self.forget_after_s = forget_after_s
        self.max_keys = max_keys
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: list[str], now: float) -> float:
        """Seconds until any of ``keys`` may try again; 0 when none is locked."""
        with self._lock:
            waits = [self._states[k].locked_until - now for k in keys if k in self._states]
        return max([0.0, *waits])

    def failure(self, keys: list[str], now: float) -> float:
        """Count a miss for each key; returns the longest lockout it started (0 if none)."""
        longest = 0.0
        with self._lock:
            self._forget(now)
            for key in keys:
                state = self._states.setdefault(key, _State())
                if now - state.last_failure > self.forget_after_s:
                    state.failures = 0
                state.failures += 1
                state.last_failure = now
                lock = lockout_s(state.failures, self.free_failures, self.base_s, self.max_s)
                if lock > 0:
                    state.locked_until = max(state.locked_until, now + lock)
                    longest = max(longest, lock)
        return longest

    def success(self, key: str) -> None:
        with self._lock:
            self._states.pop(key, None)

    def _forget(self, now: float) -> None:
        """Drop stale keys so a flood of made-up names cannot grow memory without bound."""
        if len(self._states) < self.max_keys:
            return
        stale = [
            k
            for k, s in self._states.items()
            if now - s.last_failure > self.forget_after_s and s.locked_until <= now
        ]
        for key in stale or list(self._states)[: self.max_keys // 10]:
            del self._states[key]
