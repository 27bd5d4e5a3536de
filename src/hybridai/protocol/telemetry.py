"""A device's telemetry series as the API, the dashboard and the CLI read them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TelemetryPoint(BaseModel):
    """One raw point (count 1) or one bucket of ``step`` seconds starting at ``ts``."""

    ts: float
    count: int
    mean: float
    min: float
    max: float


class TelemetrySeries(BaseModel):
    device_id: str
    metric: str
    model: str = ""  # "" for device-wide series
    step: int  # seconds per point; 0: raw points, one per status report
    points: list[TelemetryPoint] = Field(default_factory=list)
