"""Circuit breaker for one upstream, as a pure state machine with the time passed in.

Closed: calls flow. After ``threshold`` consecutive failures it opens and refuses calls for
``cooldown_s``; then it is half-open: a trial call may go (success closes it, failure reopens
it for another cooldown). A caller that marks its trial with ``on_attempt`` gets exactly one
trial per cooldown; one that does not simply lets calls through once the cooldown is over.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Breaker:
    threshold: int = 3
    cooldown_s: float = 5.0
    failures: int = 0
    opened_at: float | None = None
    trial_at: float | None = None  # when the half-open trial call went out, if one is out

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allows(self, now: float) -> bool:
        """Whether a call may be attempted now (closed, or half-open with no trial out).

        A trial that never reports back stops blocking after another cooldown.
        """
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        return self.trial_at is None or now - self.trial_at >= self.cooldown_s

    def on_attempt(self, now: float) -> Breaker:
        """Mark the half-open trial call as out (a no-op when closed)."""
        if self.state(now) is BreakerState.HALF_OPEN:
            return replace(self, trial_at=now)
        return self

    def on_success(self) -> Breaker:
        return replace(self, failures=0, opened_at=None, trial_at=None)

    def on_failure(self, now: float) -> Breaker:
        failures = self.failures + 1
        if failures >= self.threshold or self.opened_at is not None:
            return replace(self, failures=failures, opened_at=now, trial_at=None)
        return replace(self, failures=failures)
