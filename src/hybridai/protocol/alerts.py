"""Alerts and the healing actions they cause, as the API, the dashboard and the CLI see them.

Detectors (``observability/``) raise alerts over the fleet's telemetry; self-healing rules
act on them. Both meet only through these shapes, so each side can be tested on its own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from hybridai.protocol.placement import Variant

Severity = Literal["info", "warning", "critical"]
AlertState = Literal["firing", "resolved", "suppressed"]
# What an alert is about; detectors name their kind after the signal they watch.
AlertKind = Literal[
    "latency",
    "error_rate",
    "backlog_growth",
    "escalation_rate",
    "drift",
    "disk_quota",
    "certificate_expiry",
    "clock_skew",
    "device_silent",
    "model_unhealthy",
    "sync_stopped",
    "cloud_link_slow",
]
ActionState = Literal["done", "failed", "reverted", "skipped"]
# What a self-healing rule can do (``observability.healing``, ``cloud.operations.healing``)
ActionKind = Literal[
    "restart_model",
    "rollback",
    "route_to_cloud",
    "route_to_edge",
    "raise_sync_priority",
    "renew_certificate",
]
# When an action's orders are lifted: when its alert resolves, or only by an operator
RevertPolicy = Literal["on_resolve", "manual"]


class AlertSubject(BaseModel):
    """What the alert is about: a device, optionally one of its models, or a site."""

    device_id: str | None = None
    site: str | None = None
    model: str | None = None
    version: str | None = None


class Alert(BaseModel):
    alert_id: str
    kind: AlertKind
    severity: Severity
    state: AlertState
    subject: AlertSubject
    summary: str  # for people: what is wrong, in one line (never a record value)
    started_at: float
    ended_at: float | None = None
    last_seen_at: float
    occurrences: int = 1  # duplicates merged into this alert
    detector: str  # e.g. "robust_z", "ewma", "seasonal", "change_point", "threshold"
    evidence: dict[str, Any] = Field(default_factory=dict)  # values, baseline, score, window
    acked_at: float | None = None  # an operator acknowledged it (it keeps its state)
    acked_by: str | None = None


class HealingAction(BaseModel):
    """One action a self-healing rule took, always naming the alert that caused it.

    ``active``: its orders are in force (the device's desired state carries them); they end
    when the alert resolves (``revert: on_resolve``), or when an operator reverts the action.
    """

    action_id: str
    rule: str
    action: ActionKind
    alert_id: str
    alert_kind: AlertKind
    subject: AlertSubject
    state: ActionState
    active: bool = False
    revert: RevertPolicy = "on_resolve"
    taken_at: float
    ended_at: float | None = None  # its orders were lifted (alert resolved, or reverted)
    lift_at: float | None = None  # its alert resolved: orders lifted then, unless one fires
    reverted_at: float | None = None
    reverted_by: str | None = None
    detail: str = ""  # for people: what it did or why it did nothing
    changes: dict[str, Any] = Field(default_factory=dict)  # what it set, e.g. placement


class HealingOrders(BaseModel):
    """What active healing actions ask of one device, carried in its desired state's settings.

    Each order is idempotent, so an edge that sees it twice, or again after a restart, does no
    harm: ``reload`` restarts a model only while it is failed; ``renew_before`` renews the
    certificate only while it ends before that time.
    """

    placement: dict[str, Variant] = Field(default_factory=dict)  # model -> forced placement
    reload: dict[str, str] = Field(default_factory=dict)  # model -> the action asking for it
    renew_before: float | None = None  # renew the device certificate if it ends before this
