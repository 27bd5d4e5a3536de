"""Rollouts on the wire: what an operator asks for and what the cloud reports back."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from hybridai.protocol.fleet import DEVICE_ID_PATTERN, DeviceKind, Tags
from hybridai.protocol.registry import MODEL_NAME_PATTERN

RolloutStatus = Literal["pending", "running", "paused", "succeeded", "aborted"]
DeviceHealth = Literal["healthy", "waiting", "unhealthy"]


class RolloutTarget(BaseModel):
    """Which devices: all empty means the whole fleet.

    ``sites``, ``kinds`` and ``tags`` narrow together (AND): a device must be at one of the
    sites, of one of the kinds and carry every tag given; ``devices`` adds devices by name.
    """

    sites: list[str] = Field(default_factory=list)
    kinds: list[DeviceKind] = Field(default_factory=list)
    tags: Tags = Field(default_factory=dict)
    devices: list[str] = Field(default_factory=list)

    def everything(self) -> bool:
        return not (self.sites or self.kinds or self.tags or self.devices)


class HealthGatesSpec(BaseModel):
    """Limits each updated device must stay within.

    A device counts as healthy only once it has served ``min_requests`` requests of the new
    version; ``allow_idle`` accepts a device without that traffic (silence is then taken as
    health, which it usually is not).
    """

    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    max_p99_ms: float | None = Field(default=None, gt=0)
    max_escalation_rate: float | None = Field(default=None, ge=0, le=1)
    max_confidence_shift: float | None = Field(default=None, ge=0, le=1)
    min_requests: int = Field(default=20, ge=1)
    allow_idle: bool = False


class RolloutRequest(BaseModel):
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    version: str
    target: RolloutTarget = Field(default_factory=RolloutTarget)
    canary_share: float = Field(default=0.34, gt=0, le=1)
    step_share: float = Field(default=0.33, gt=0, le=1)
    soak_s: float = Field(default=10.0, ge=0, le=7 * 86400)
    abort_unhealthy_share: float = Field(default=0.05, ge=0, lt=1)
    device_timeout_s: float = Field(default=60.0, gt=0, le=7 * 86400)
    # The soak's limit: a step whose devices have not served ``gates.min_requests`` by then
    # is held (paused), never promoted.
    traffic_timeout_s: float = Field(default=600.0, gt=0, le=7 * 86400)
    gates: HealthGatesSpec = Field(default_factory=HealthGatesSpec)


class RolloutStep(BaseModel):
    number: int
    devices: list[str]
    started_at: float
    converged_at: float | None = None


class DeviceVerdict(BaseModel):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    health: DeviceHealth
    reason: str


class SkippedDevice(BaseModel):
    """A device of the target left out at start: it cannot run the version, so it keeps its own."""

    device_id: str
    reason: str


class Rollout(BaseModel):
    rollout_id: str
    model: str
    from_version: str
    to_version: str
    status: RolloutStatus
    reason: str
    step: int  # 0 before the canary, 1 the canary, ...
    steps: list[RolloutStep]
    devices: list[str]  # the whole target, less the skipped devices
    skipped: list[SkippedDevice] = Field(default_factory=list)
    updated: list[str]  # devices assigned the new version now
    verdicts: list[DeviceVerdict]
    request: RolloutRequest
    created_at: float
    updated_at: float
    created_by: str
