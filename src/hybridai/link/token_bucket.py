"""A token bucket in bytes: caps the average rate of what one sender puts on a thin link.

The bucket fills at ``rate`` bytes/s up to ``burst`` bytes. ``reserve(n, now)`` takes ``n``
bytes at once and answers how long to wait before sending them; the bucket may go into debt
(a batch larger than the burst still goes, later), so over any long run the rate holds to
within one burst. Pure arithmetic over the ``now`` it is given: no clock, no sleeping.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 bytes/s")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        if self.burst <= 0:
            raise ValueError("burst must be > 0 bytes")
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` bytes; return the seconds to wait before sending them (0: send now)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._refill(now)
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate (a new setting) without forgiving debt already taken."""
        if rate <= 0:
            raise ValueError("rate must be > 0 bytes/s")
        self._refill(now)
        self.rate = float(rate)
        self.burst = float(rate)
        self._tokens = min(self._tokens, self.burst)
