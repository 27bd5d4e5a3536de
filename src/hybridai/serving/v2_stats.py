"""Cumulative per model version counters behind the v2 statistics extension.

Both tiers' backends keep one book: the edge counts what its router answered (wherever it ran)
and what ran on this node; the cloud counts what it served. Counts only grow, from the process's
start, as Triton's do; additions are plain integer updates on the event loop or under the GIL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from hybridai.protocol.v2_stats import ModelInferenceStats, ModelStatistics, StatDuration


def _add(stat: StatDuration, ns: int) -> None:
    stat.count += 1
    stat.ns += max(0, ns)


class StatisticsBook:
    def __init__(self) -> None:
        self._models: dict[tuple[str, str], ModelStatistics] = {}

    def _entry(self, name: str, version: str) -> ModelStatistics:
        entry = self._models.get((name, version))
        if entry is None:
            entry = self._models[(name, version)] = ModelStatistics(name=name, version=version)
        return entry

    def succeeded(self, name: str, version: str, elapsed_ns: int) -> None:
        entry = self._entry(name, version)
        _add(entry.inference_stats.success, elapsed_ns)
        entry.inference_count += 1
        entry.last_inference = time.time_ns() // 1_000_000

    def failed(self, name: str, version: str, elapsed_ns: int = 0) -> None:
        entry = self._entry(name, version)
        _add(entry.inference_stats.fail, elapsed_ns)
        entry.last_inference = time.time_ns() // 1_000_000

    def executed(self, name: str, version: str, queue_ns: int, infer_ns: int) -> None:
        """One model run here: its wait for a worker and the run itself."""
        entry = self._entry(name, version)
        entry.execution_count += 1
        _add(entry.inference_stats.queue, queue_ns)
        _add(entry.inference_stats.compute_infer, infer_ns)

    def snapshot(
        self,
        name: str | None = None,
        version: str | None = None,
        known: Iterable[tuple[str, str]] = (),
    ) -> list[ModelStatistics]:
        """Copies of the entries that match, with zero entries for ``known`` versions unseen."""
        keys = set(self._models) | set(known)
        chosen = sorted(
            k
            for k in keys
            if (name is None or k[0] == name) and (version is None or k[1] == version)
        )
        empty = ModelInferenceStats()
        return [
            self._models[k].model_copy(deep=True)
            if k in self._models
            else ModelStatistics(name=k[0], version=k[1], inference_stats=empty.model_copy())
            for k in chosen
        ]
