"""Registry stages and version comparison on the wire."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

Stage = Literal["candidate", "staged", "production", "archived"]


class StageChange(BaseModel):
    """Move a version to ``stage``; ``production`` deploys it to the whole fleet."""

    stage: Literal["staged", "production", "archived"]


class MetricDelta(BaseModel):
    key: str  # dotted path into the metrics, e.g. "edge.accuracy"
    a: Any = None
    b: Any = None
    delta: float | None = None  # b - a when both are numbers


class VersionComparison(BaseModel):
    name: str
    a: str
    b: str
    stages: dict[str, str]  # version -> stage
    metrics: list[MetricDelta]
    sizes: dict[str, dict[str, int | None]]  # variant -> {"a": bytes, "b": bytes}
    lineage: list[MetricDelta]  # only the keys whose values differ
