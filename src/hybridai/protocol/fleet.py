"""Enrollment, device status reports and desired state: the control-plane contract.

Edges only ever dial out: they enroll, pull their desired state (ETag / long-poll) and push
status reports. The cloud never opens a connection to an edge.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

DeviceKind = Literal["sensor-gateway", "edge-server", "ai-pc", "workstation"]
Variant = Literal["edge", "cloud"]
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class Capabilities(BaseModel):
    cores: int = Field(ge=1)
    memory_mb: int = Field(ge=1)
    execution_providers: list[str] = Field(default_factory=list)
    accelerator: str | None = None


class EnrollmentTokenRequest(BaseModel):
    site: str = Field(pattern=DEVICE_ID_PATTERN)
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    ttl_s: int = Field(default=3600, ge=60, le=30 * 24 * 3600)


class EnrollmentToken(BaseModel):
    token: str
    site: str
    device_id: str
    expires_at: float


class EnrollRequest(BaseModel):
    token: str
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    kind: DeviceKind
    capabilities: Capabilities
    agent_version: str


class EnrollResponse(BaseModel):
    device_id: str
    site: str
    credential: str  # shown once; the cloud keeps only its hash


class ModelAssignment(BaseModel):
    """One model version a device should run, with what it needs to verify the artifact."""

    name: str
    version: str
    variant: Variant
    sha256: str
    size: int
    artifact_path: str  # relative to the cloud's base URL


class DesiredState(BaseModel):
    device_id: str
    generation: str  # the ETag: changes whenever anything below changes
    models: list[ModelAssignment] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)


class LoadedModel(BaseModel):
    name: str
    version: str
    variant: Variant
    state: Literal["loading", "ready", "failed"]
    error: str | None = None


class StoreStats(BaseModel):
    records_ingested: int = 0
    records_synced: int = 0
    records_deduplicated: int = 0
    backlog_records: int = 0
    oldest_unsynced_age_s: float | None = None
    batches_synced: int = 0
    bytes_synced: int = 0


class InferenceStats(BaseModel):
    requests_edge: int = 0
    requests_cloud: int = 0
    requests_failed: int = 0
    degraded: int = 0


class StatusReport(BaseModel):
    """What an edge tells the cloud on every heartbeat."""

    device_id: str
    agent_version: str
    uptime_s: float
    models: list[LoadedModel] = Field(default_factory=list)
    store: StoreStats = Field(default_factory=StoreStats)
    inference: InferenceStats = Field(default_factory=InferenceStats)
    cloud_reachable: bool = True
    estimates: dict[str, float] = Field(default_factory=dict)


class Device(BaseModel):
    """A device as the fleet registry knows it."""

    device_id: str
    site: str
    kind: DeviceKind
    capabilities: Capabilities
    enrolled_at: float
    last_seen: float | None = None
    revoked: bool = False
    status: StatusReport | None = None
