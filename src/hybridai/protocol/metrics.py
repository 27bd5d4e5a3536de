"""The compact metrics summary an edge adds to every status report.

The cloud cannot scrape an edge behind NAT, so each heartbeat carries what a scrape would show
in a few numbers: traffic, errors and escalations, latency percentiles by placement and per
model version, backlog and disk use. Counters are totals since the agent started (the cloud
derives rates from two reports); percentiles are of the edge's recent requests.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class LatencySummary(BaseModel):
    """Requests that finally ran at one placement (edge, cloud, peer) and their latency."""

    requests: int = 0
    p50_ms: float | None = None  # of recent requests (None: none yet)
    p99_ms: float | None = None


class ModelVersionSummary(BaseModel):
    """One model version's traffic on the device since it was loaded."""

    name: str
    version: str
    requests: int = 0
    errors: int = 0
    escalations: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None


class MetricsSummary(BaseModel):
    """What the edge's ``/metrics`` would say, in one small object per status report."""

    at: float  # epoch seconds when it was taken
    requests: int = 0  # answered since the agent started
    errors: int = 0  # failed requests
    escalations: int = 0  # cascade requests sent on to the cloud
    degraded: int = 0  # answered by a fallback (the cloud unreachable)
    latency: dict[str, LatencySummary] = Field(default_factory=dict)  # by placement
    backlog_records: int = 0  # stored, not yet synced
    oldest_unsynced_age_s: float | None = None
    disk_bytes: int = 0  # the edge store's size
    disk_quota_bytes: int | None = None
    models: list[ModelVersionSummary] = Field(default_factory=list)
