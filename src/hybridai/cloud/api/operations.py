"""Operations routes: device telemetry series, alerts and the self-healing actions they cause."""

from __future__ import annotations

import re
import time

from fastapi import APIRouter, Query, Request

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.operations import alerts, healing, telemetry
from hybridai.observability.healing import HealingRules
from hybridai.protocol.alerts import Alert, AlertState, HealingAction
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.telemetry import TelemetrySeries

router = APIRouter(prefix="/api/v1", tags=["operations"])
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(text: str | None, name: str, now: float, default: float) -> float:
    """Epoch seconds, or a duration back from now (``90s``, ``15m``, ``1h``, ``7d``)."""
    if text is None or text == "":
        return default
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        return float(text)
    except ValueError:
        raise ApiError(
            400,
            ErrorCode.BAD_REQUEST,
            f"'{name}' is neither epoch seconds nor a duration: write e.g. 1h, 15m, 7d or "
            "1764000000",
        ) from None


@router.get("/telemetry")
def get_telemetry(
    request: Request,
    device: str,
    metric: str,
    model: str = "",
    since: str | None = None,
    until: str | None = None,
    step: int | None = Query(default=None, ge=0, le=30 * 86400),
) -> TelemetrySeries:
    """One device's series; ``step`` seconds per point (0 raw; default: chosen for the span)."""
    require(request, "read")
    now = time.time()
    start = moment(since, "since", now, now - 3600)
    end = moment(until, "until", now, now)
    with cloud_of(request).session() as session:
        return telemetry.series(session, device, metric, model, start, end, step)


@router.get("/alerts")
def list_alerts(request: Request, state: AlertState | None = None) -> list[Alert]:
    """Alerts, newest change first; ``state=firing`` for what is wrong now."""
    require(request, "read")
    with cloud_of(request).session() as session:
        return alerts.list_alerts(session, state)


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: str, request: Request) -> Alert:
    require(request, "read")
    with cloud_of(request).session() as session:
        return alerts.get_alert(session, alert_id)


@router.post("/alerts/{alert_id}/ack")
def ack_alert(alert_id: str, request: Request) -> Alert:
    """An operator has seen the alert (recorded with who and when; its state is unchanged)."""
    who = require(request, "operate")
    with cloud_of(request).session() as session:
        return alerts.ack(session, alert_id, who.name, time.time())


@router.get("/healing")
def list_healing(
    request: Request, alert: str | None = None, device: str | None = None
) -> list[HealingAction]:
    """Self-healing actions, newest first, each naming the alert that caused it."""
    require(request, "read")
    with cloud_of(request).session() as session:
        return healing.list_actions(session, alert, device)


@router.get("/healing/rules")
def healing_rules(request: Request) -> HealingRules:
    """The rules in force (``healing_rules_file``, else the built-in ones)."""
    require(request, "read")
    return cloud_of(request).healing_rules


@router.post("/healing/{action_id}/revert")
def revert_healing(action_id: str, request: Request) -> HealingAction:
    """Undo an action: its orders are lifted (a rollback: the rollout starts again); audited."""
    who = require(request, "operate")
    with cloud_of(request).session() as session:
        return healing.revert(session, action_id, who.name, time.time())
