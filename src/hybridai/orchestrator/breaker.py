"""Circuit breaker for one upstream, as a pure state machine with the time passed in.

Closed: calls flow. After ``threshold`` consecutive failures it opens and refuses calls for
``cooldown_s``; then one trial call is allowed (half-open): success closes it, failure reopens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Breaker:
    threshold: int = 3
    cooldown_s: float = 5.0
    failures: int = 0
    opened_at: float | None = None

    def allows(self, now: float) -> bool:
        """Whether a call may be attempted now (closed, or open long enough to try again)."""
        return self.opened_at is None or now - self.opened_at >= self.cooldown_s

    def is_open(self, now: float) -> bool:
        return not self.allows(now)

    def on_success(self) -> Breaker:
        return replace(self, failures=0, opened_at=None)

    def on_failure(self, now: float) -> Breaker:
        failures = self.failures + 1
        if failures >= self.threshold:
            return replace(self, failures=failures, opened_at=now)
        return replace(self, failures=failures)
