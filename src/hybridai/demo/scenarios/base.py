"""What a shipped use case is made of, so a new one is one module.

A ``UseCase`` says which streams its sites produce (and how the data policy classifies their
fields), how the platform's own training pipeline learns its edge and cloud models from the
lake (a ``TrainingSpec``), how its requests are placed (a cascade at a calibrated cloud share),
and how its quality is judged on labelled rows no run has seen. ``runner.py`` plays any of them
on a real local fleet; nothing here does I/O.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Records = dict[str, list[dict[str, Any]]]  # stream -> records, in the order a site sends them


@dataclass(frozen=True)
class Site:
    """One edge of the use case: device id, site, kind (as ``hybridai edge run --kind``)."""

    device: str
    site: str
    kind: str = "edge-server"


@dataclass(frozen=True)
class Holdout:
    """Labelled rows no training run sees: features as the edge computes them, ground truth.

    ``series`` groups rows into ordered time series (NAB-style scoring); ``None`` when rows
    are independent.
    """

    x: Array
    y: Array
    series: Array | None = None


@dataclass(frozen=True)
class Sizes:
    """How much data a run plays: rows ingested per site, field requests, holdout rows."""

    train_units: int
    live_requests: int
    holdout_units: int


@dataclass(frozen=True)
class Quality:
    """A use case's headline quality (``value``, named ``metric``) and its supporting figures."""

    metric: str
    value: float
    details: dict[str, float] = field(default_factory=dict)


class UseCase(abc.ABC):
    """A scenario of ``hybridai demo --scenario NAME`` and ``bench/usecases.py``."""

    name: str
    title: str
    model: str
    sites: tuple[Site, ...]
    target_cloud_share: float = 0.1  # the cascade's calibrated share of requests escalated
    edge_budget_ms: float = 50.0  # the edge's latency target (reported against p99)
    sizes: dict[str, Sizes]

    @abc.abstractmethod
    def records(self, seed: int, units: int, site: Site) -> Records:
        """What ``site`` produces: records per stream, with the labels that arrive later."""

    def policies(self) -> dict[str, dict[str, Any]]:
        """Data policy per stream (``PUT /api/v1/policies/{stream}``); none by default."""
        return {}

    @abc.abstractmethod
    def training_spec(self, seed: int) -> dict[str, Any]:
        """The ``TrainingSpec`` (as JSON) the cloud trains the edge and cloud models with."""

    @abc.abstractmethod
    def holdout(self, seed: int, units: int) -> Holdout:
        """Ground-truth rows from the same generator, never ingested."""

    @abc.abstractmethod
    def quality(self, holdout: Holdout, scores: Array) -> Quality:
        """Judge positive-class scores on ``holdout`` (higher is better)."""

    def analytics(self) -> dict[str, str]:
        """Cloud-side DuckDB queries over the lake to run after sync, by name."""
        return {}

    def lake_checks(self, records: Records) -> dict[str, str]:
        """Queries that must count 0 over the lake (e.g. raw card numbers), by name."""
        return {}

    def placement(self) -> dict[str, Any]:
        """The deployment's placement policy: a cascade on the calibrated threshold."""
        return {"kind": "cascade"}
