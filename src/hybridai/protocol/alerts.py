"""Alerts and the healing actions they cause, as the API, the dashboard and the CLI see them.

Detectors (``observability/``) raise alerts over the fleet's telemetry; self-healing rules
act on them. Both meet only through these shapes, so each side can be tested on its own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

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
]
ActionState = Literal["done", "failed", "reverted", "skipped"]


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
    """One action a self-healing rule took, always naming the alert that caused it."""

    action_id: str
    rule: str
    action: str  # e.g. "restart_model", "rollback", "route_to_cloud", "raise_sync_priority"
    alert_id: str
    subject: AlertSubject
    state: ActionState
    taken_at: float
    reverted_at: float | None = None
    detail: str = ""
