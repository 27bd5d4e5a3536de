"""Latency estimates from live traffic, as pure values updated by pure functions."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Ewma:
    """Exponentially weighted moving average; ``value`` is None until the first sample."""

    alpha: float = 0.2
    value: float | None = None
    samples: int = 0

    def update(self, sample: float) -> Ewma:
        if self.value is None:
            return replace(self, value=sample, samples=1)
        value = self.alpha * sample + (1.0 - self.alpha) * self.value
        return replace(self, value=value, samples=self.samples + 1)
