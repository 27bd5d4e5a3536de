"""Enrollment, device status reports and desired state: the control-plane contract.

Edges only ever dial out: they enroll, pull their desired state (ETag / long-poll) and push
status reports. The cloud never opens a connection to an edge.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from hybridai.protocol.deferral import DeferralSpec
from hybridai.protocol.edge_settings import AppliedSetting, DeviceSettings
from hybridai.protocol.loops import LoopHealth
from hybridai.protocol.metrics import MetricsSummary
from hybridai.protocol.names import check_name
from hybridai.protocol.placement import PlacementPolicy, Variant
from hybridai.protocol.policy import DataPolicy
from hybridai.protocol.site_access import SiteAccess
from hybridai.protocol.streams import SchemaSpec, StreamSchemaState

DeviceKind = Literal["sensor-gateway", "edge-server", "ai-pc", "workstation"]
# enrolling: retrying (the cloud unreachable); refused: the cloud refused the token for good
EnrollmentState = Literal["enrolling", "enrolled", "refused"]
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
TAG_KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
TAG_VALUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
MAX_TAGS = 32
_TAG_KEY = re.compile(TAG_KEY_PATTERN)
_TAG_VALUE = re.compile(TAG_VALUE_PATTERN)


def check_tag_key(key: str) -> str:
    if not _TAG_KEY.match(key):
        raise ValueError(
            f"tag key {key!r} is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return key


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags as an operator writes them (``line=3``): keys like device ids, plain values."""
    for key, value in tags.items():
        check_tag_key(key)
        if not _TAG_VALUE.match(value):
            raise ValueError(
                f"tag {key}={value!r} has an invalid value: use 1-63 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
    return tags


# Labels that select devices (rollout targets): at most MAX_TAGS per device.
Tags = Annotated[dict[str, str], Field(max_length=MAX_TAGS), AfterValidator(check_tags)]
TagKey = Annotated[str, AfterValidator(check_tag_key)]


class Capabilities(BaseModel):
    cores: int = Field(ge=1)
    memory_mb: int = Field(ge=1)
    execution_providers: list[str] = Field(default_factory=list)
    accelerator: str | None = None


class EnrollmentTokenRequest(BaseModel):
    site: str = Field(pattern=DEVICE_ID_PATTERN)
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    ttl_s: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    tags: Tags = Field(default_factory=dict)  # given to the device when it enrolls


class EnrollmentToken(BaseModel):
    token: str
    site: str
    device_id: str
    expires_at: float
    tags: dict[str, str] = Field(default_factory=dict)


class EnrollRequest(BaseModel):
    token: str
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    kind: DeviceKind
    capabilities: Capabilities
    agent_version: str
    csr: str = Field(max_length=8192)  # PEM; the key it signs never leaves the device
    tags: Tags = Field(default_factory=dict)  # declared by the device; the token's tags win


class EnrollResponse(BaseModel):
    """The device certificate (PEM, signed by the platform CA) and that CA, to trust from now."""

    device_id: str
    site: str
    certificate: str
    ca_certificate: str


class CertificateRequest(BaseModel):
    """A renewal: a CSR in the device's own name, sent over mTLS with its current certificate."""

    csr: str = Field(max_length=8192)


class CertificateResponse(BaseModel):
    certificate: str
    ca_certificate: str


class ModelAssignment(BaseModel):
    """One model version a device should run, with what it needs to verify the artifact."""

    # Both become parts of file names and URLs on the edge: allow-listed (protocol.names)
    name: Annotated[str, AfterValidator(partial(check_name, "model name"))]
    version: Annotated[str, AfterValidator(partial(check_name, "model version"))]
    variant: Variant
    sha256: str
    size: int
    artifact_path: str  # relative to the cloud's base URL
    signature: str | None = None  # Ed25519 over digest + name/version/variant (link.signing)
    policy: PlacementPolicy | None = None  # how requests are placed (None: latency, no budget)
    # Histograms of the training data (per feature, and of confidence): edges measure drift
    reference: dict[str, Any] | None = None
    # How its cascade decides, with the learned router (signed) when it has one
    deferral: DeferralSpec | None = None


class DesiredState(BaseModel):
    device_id: str
    generation: str  # the ETag: changes whenever anything below changes
    models: list[ModelAssignment] = Field(default_factory=list)
    settings: DeviceSettings = Field(default_factory=DeviceSettings)  # merged for this device
    signing_public_key: str | None = None  # base64 Ed25519: edges pin it on first use
    policies: list[DataPolicy] = Field(default_factory=list)
    # Declared record schemas per stream (the device's site's, else the fleet's)
    stream_schemas: dict[str, SchemaSpec] = Field(default_factory=dict)
    # Who may call this edge: site key hashes and the site's device keys (None: not sent)
    site_access: SiteAccess | None = None


class LoadedModel(BaseModel):
    name: str
    version: str
    variant: Variant
    state: Literal["loading", "ready", "failed"]
    error: str | None = None
    failed_version: str | None = None  # a version it refused (digest, signature) or could not load
    # The ONNX Runtime execution provider the serving version runs on (None: none serving)
    provider: str | None = None


class StreamStats(BaseModel):
    """One stream of an edge store: its priority class, what it holds, what left and why."""

    priority: str = "normal"
    records_ingested: int = 0
    records_deduplicated: int = 0
    records_compressed: int = 0  # compressed away (deadband / swinging door)
    records_stored: int = 0
    bytes_stored: int = 0
    backlog_records: int = 0
    oldest_unsynced_age_s: float | None = None
    records_synced: int = 0
    bytes_synced: int = 0
    records_expired: int = 0
    records_evicted_synced: int = 0  # by the disk quota
    records_evicted_unsynced: int = 0  # by the disk quota, never sent: data lost, reported
    sync_bytes_per_s: float = 0.0  # wire bytes per second of its batches, last drain that sent
    sync_records_per_s: float = 0.0


class StoreStats(BaseModel):
    records_ingested: int = 0
    records_synced: int = 0
    records_deduplicated: int = 0
    backlog_records: int = 0
    oldest_unsynced_age_s: float | None = None
    batches_synced: int = 0
    bytes_synced: int = 0
    records_expired: int = 0  # deleted by retention (synced, or local-only by policy)
    retention_overdue: int = 0  # unsynced records past their retention, kept and counted
    local_only_records: int = 0  # of restricted streams: never synced, not in the backlog
    records_compressed: int = 0
    records_evicted_synced: int = 0
    records_evicted_unsynced: int = 0
    bytes_stored: int = 0
    quota_bytes: int | None = None
    over_quota: bool = False  # only unsynced high-priority data is left to evict: kept
    sync_bytes_per_s: float = 0.0  # wire bytes per second over the last drain
    sync_records_per_s: float = 0.0
    streams: dict[str, StreamStats] = Field(default_factory=dict)
    batches_quarantined: int = 0  # sent, but kept apart from the lake by the cloud (types)
    last_quarantine: str | None = None  # the cloud's reason for the latest one


class MqttStats(BaseModel):
    """MQTT ingest since the agent started: the broker link, what came in, where it went."""

    connected: bool = False
    connected_since: float | None = None  # epoch seconds of the current connection
    reconnects: int = 0  # connections made after the first
    disconnects: int = 0  # connections lost (the agent's own stop excluded)
    last_error: str | None = None  # the last refusal or loss, with the broker's reason
    messages_received: int = 0
    records_stored: int = 0
    records_duplicate: int = 0  # already stored (a redelivery, a producer's retry)
    messages_dead_lettered: int = 0
    dead_lettered_by_reason: dict[str, int] = Field(
        default_factory=dict, description="malformed, schema, invalid_record, unrouted"
    )
    store_failures: int = 0  # store errors (a full disk): retried, not acknowledged meanwhile


class InferenceStats(BaseModel):
    requests_edge: int = 0
    requests_cloud: int = 0
    requests_failed: int = 0
    degraded: int = 0


class ModelHealth(BaseModel):
    """Traffic of one model version on a device since it was loaded: rollouts gate on it."""

    name: str
    version: str
    requests: int = 0
    errors: int = 0
    escalations: int = 0
    p99_ms: float | None = None  # of recent requests
    confidence_mean: float | None = None  # of recent cascade confidences


class ModelDrift(BaseModel):
    """Drift of what one model served, over the edge's recent window, against its reference."""

    version: str
    window: int = 0  # rows in the window
    psi: dict[str, float] = Field(default_factory=dict)  # per feature
    psi_max: float = 0.0
    confidence_mean: float | None = None
    confidence_shift: float = 0.0  # reference mean confidence minus the window's (> 0: worse)
    hard_examples: int = 0  # escalations kept since this version was loaded


class StatusReport(BaseModel):
    """What an edge tells the cloud on every heartbeat."""

    device_id: str
    agent_version: str
    uptime_s: float
    models: list[LoadedModel] = Field(default_factory=list)
    store: StoreStats = Field(default_factory=StoreStats)
    inference: InferenceStats = Field(default_factory=InferenceStats)
    cloud_reachable: bool = True
    # This device's clock minus the cloud's (None: not yet measured); beyond the edge's bound,
    # ``clock_hold`` says what waits (retention) and why
    clock_skew_s: float | None = None
    clock_hold: str | None = None
    enrollment: EnrollmentState = "enrolled"
    last_error: str | None = None  # the latest failure talking to the cloud, with its fix
    loops: list[LoopHealth] = Field(default_factory=list)  # its background loops' health
    estimates: dict[str, float] = Field(default_factory=dict)
    policies: list[str] = Field(default_factory=list)  # streams whose policy is applied
    advertise_url: str | None = None  # its peer listener, https (None: not offered)
    lan_auth: str = "keys"  # how its LAN API admits clients: keys, or open (lab benches)
    inflight: int = 0  # inference requests in progress when the report was made
    drift: dict[str, ModelDrift] = Field(default_factory=dict)  # per model
    model_health: list[ModelHealth] = Field(default_factory=list)
    mqtt: MqttStats | None = None  # None: MQTT ingest is not configured
    stream_schemas: dict[str, StreamSchemaState] = Field(default_factory=dict)  # declared ones
    # The settings it runs with (protocol.edge_settings), each from its own or the cloud's
    settings: dict[str, AppliedSetting] = Field(default_factory=dict)
    settings_error: str | None = None  # cloud settings it could not apply (last good kept)
    metrics: MetricsSummary | None = None  # its /metrics in brief (the cloud cannot scrape it)


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
    tags: dict[str, str] = Field(default_factory=dict)
    quarantined_batches: int = 0  # its batches the lake could not take (GET /api/v1/quarantine)
    last_quarantine: str | None = None  # why the latest one was quarantined


class TagChange(BaseModel):
    """An operator's edit of a device's tags: ``add`` sets (or overwrites), ``remove`` drops."""

    add: Tags = Field(default_factory=dict)
    remove: list[TagKey] = Field(default_factory=list, max_length=MAX_TAGS)

    @model_validator(mode="after")
    def _not_both(self) -> TagChange:
        both = sorted(set(self.add) & set(self.remove))
        if both:
            raise ValueError(f"tag {', '.join(both)} is both added and removed: pick one")
        return self
