"""Retry pacing: exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential cap) spreads a fleet's retries
after an outage, so devices that failed together do not all come back in the same instant.
The function is pure: the caller passes the attempt number and its own random generator, so
the live uploader and the simulator pace retries the same way and tests are reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry number ``attempt`` (0 for the first retry)."""

    base_s: float = 0.2
    factor: float = 2.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise ValueError(f"base_s must be > 0, got {self.base_s}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not self.max_s >= self.base_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= base_s ({self.base_s})")

    def cap(self, attempt: int) -> float:
        """Bound the delay for ``attempt``: grows geometrically up to ``max_s``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        try:
            grown = self.base_s * self.factor**attempt
        except OverflowError:
            return self.max_s
        return min(self.max_s, grown)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Draw a delay uniformly from ``[0, cap(attempt)]``."""
        return rng.uniform(0.0, self.cap(attempt))
