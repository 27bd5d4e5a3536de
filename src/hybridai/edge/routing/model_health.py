"""Per model version traffic health at the edge: what a rollout's health gates read.

Counters are per (model, version) since the version served its first request here, so a new
version is judged on its own traffic only; latency and confidence keep a recent window. The
same answers feed the v2 statistics extension's cumulative counters (``book``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from hybridai.protocol.fleet import ModelHealth
from hybridai.protocol.metrics import ModelVersionSummary
from hybridai.serving.v2_stats import StatisticsBook

WINDOW = 512  # recent requests kept per version for p99 and mean confidence


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    escalations: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    confidences: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))


class ModelHealthTracker:
    def __init__(self) -> None:
        self._by_version: dict[tuple[str, str], _Counts] = {}
        self.book = StatisticsBook()

    def _counts(self, name: str, version: str) -> _Counts:
        return self._by_version.setdefault((name, version), _Counts())

    def answered(
        self,
        name: str,
        version: str,
        elapsed_ms: float,
        escalated: bool = False,
        confidence: float | None = None,
    ) -> None:
        counts = self._counts(name, version)
        counts.requests += 1
        counts.escalations += int(escalated)
        counts.latencies_ms.append(elapsed_ms)
        self.book.succeeded(name, version, int(elapsed_ms * 1_000_000))
        if confidence is not None:
            counts.confidences.append(confidence)

    def failed(self, name: str, version: str | None) -> None:
        counts = self._counts(name, version or "?")
        counts.requests += 1
        counts.errors += 1
        self.book.failed(name, version or "?")

    def ran(self, name: str, version: str, queue_s: float, infer_s: float) -> None:
        """One model run on this node: its wait for a worker thread and the run."""
        self.book.executed(name, version, int(queue_s * 1e9), int(infer_s * 1e9))

    def snapshot(self) -> list[ModelHealth]:
        return [
            ModelHealth(
                name=name,
                version=version,
                requests=c.requests,
                errors=c.errors,
                escalations=c.escalations,
                p99_ms=_p99(c.latencies_ms),
                confidence_mean=(
                    sum(c.confidences) / len(c.confidences) if c.confidences else None
                ),
            )
            for (name, version), c in sorted(self._by_version.items())
        ]

    def summaries(self) -> list[ModelVersionSummary]:
        """Per version, for the status report's metrics summary: with the median too."""
        return [
            ModelVersionSummary(
                name=name,
                version=version,
                requests=c.requests,
                errors=c.errors,
                escalations=c.escalations,
                p50_ms=percentile(c.latencies_ms, 0.5),
                p99_ms=percentile(c.latencies_ms, 0.99),
            )
            for (name, version), c in sorted(self._by_version.items())
        ]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``, in their unit; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _p99(values: deque[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)
