"""Self-healing in the metadata store: alert events become actions, recorded and audited.

``handle`` takes the events the alert evaluator wrote and, per rule the alert triggers
(``observability.healing``), takes the action unless a rate limit or the lack of a target
stops it; every outcome, skips included, is a ``HealingAction`` row naming its alert. Actions
work through what the platform already obeys, so nothing reaches into a device:
- orders in the device's desired state (``HealingOrders``: a forced placement, a model
  reload, a certificate renewal), which the edge applies idempotently;
- a settings overlay above the device's own level (``raise_sync_priority``), so ``fleet
  config show`` names the action a value came from;
- the rollout driver (``rollback`` aborts the rollout its alert began with).
While an action is ``active`` its orders stay in force; they end when its alert resolves
(``revert: on_resolve``) or when an operator reverts it, which also undoes a rollback by
starting the same rollout again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hybridai.cloud.devices import device_settings
from hybridai.cloud.models import rollout
from hybridai.cloud.operations.alerts import subject_key
from hybridai.governance import audit
from hybridai.observability.alerting import Event
from hybridai.observability.healing import (
    MODEL_ACTIONS,
    HealingRule,
    HealingRules,
    matching,
    refusal,
)
from hybridai.orchestrator import rollout as machine
from hybridai.protocol.alerts import Alert, HealingAction, HealingOrders
from hybridai.protocol.edge_settings import EdgeConfig
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import StatusReport
from hybridai.storage.tables import (
    AlertRow,
    DeviceCertificateRow,
    DeviceRow,
    HealingActionRow,
    RolloutRow,
)

log = logging.getLogger(__name__)
MAX_ACTIONS = 1000  # per answer
ACTOR = "healer"


@dataclass(frozen=True)
class Outcome:
    state: str  # ActionState
    detail: str
    orders: dict[str, Any]
    changes: dict[str, Any]


def _skip(detail: str) -> Outcome:
    return Outcome("skipped", detail, {}, {})


def _report(session: Session, device_id: str | None) -> StatusReport | None:
    row = session.get(DeviceRow, device_id) if device_id else None
    if row is None or not row.status:
        return None
    try:
        return StatusReport.model_validate(row.status)
    except ValueError:
        return None


def _models(session: Session, alert: Alert) -> list[str]:
    """The models an alert is about: its own, else those the device reports failed."""
    if alert.subject.model:
        return [alert.subject.model]
    report = _report(session, alert.subject.device_id)
    if report is None:
        return []
    return sorted(m.name for m in report.models if m.state == "failed" or m.failed_version)


def _route(session: Session, alert: Alert, where: str) -> Outcome:
    models = _models(session, alert)
    if not models:
        return _skip("no model to route: the alert names none and the device reports none failed")
    if where == "edge":  # only what the device can answer itself; the rest keeps its cloud
        report = _report(session, alert.subject.device_id)
        ready = {m.name for m in report.models if m.state == "ready"} if report else set()
        if not ready & set(models):
            return _skip(f"{', '.join(models)} not ready at the device: nothing to answer there")
        models = sorted(ready & set(models))
    placement = {m: where for m in models}
    return Outcome(
        "done",
        f"{', '.join(models)} answered at the {where} while the alert lasts "
        "(restricted streams still stay on site)",
        {"placement": placement},
        {"placement": placement},
    )


def _restart(session: Session, alert: Alert, action_id: str) -> Outcome:
    models = _models(session, alert)
    if not models:
        return _skip("no failed model to restart: the device reports every model loaded")
    return Outcome(
        "done",
        f"the edge loads {', '.join(models)} anew (a fresh download, verified, then loaded)",
        {"reload": {m: action_id for m in models}},
        {"reload": models},
    )


def _renew(session: Session, alert: Alert) -> Outcome:
    device_id = alert.subject.device_id
    newest = session.scalar(
        select(func.max(DeviceCertificateRow.not_after)).where(
            DeviceCertificateRow.device_id == device_id,
            DeviceCertificateRow.revoked_at.is_(None),
        )
    )
    if newest is None:
        return _skip(f"device {device_id} has no valid certificate to renew")
    return Outcome(
        "done",
        f"device {device_id} renews its certificate (it ends at {newest:.0f})",
        {"renew_before": newest + 1.0},
        {"renew_before": newest + 1.0},
    )


def _raise_sync(session: Session, alert: Alert, rule: HealingRule, defaults: EdgeConfig) -> Outcome:
    device = session.get(DeviceRow, alert.subject.device_id) if alert.subject.device_id else None
    if device is None:
        return _skip("the alert names no device")
    current = device_settings.merged_for(session, device, defaults).settings
    overlay: dict[str, Any] = {"batch_max_wait_s": 0.0}
    if current.sync_bandwidth_bytes_per_s is not None:
        overlay["sync_bandwidth_bytes_per_s"] = (
            current.sync_bandwidth_bytes_per_s * rule.bandwidth_factor
        )
    if current.sync_window:
        overlay["sync_window"] = ""  # sync at any time while the alert lasts
    report = _report(session, device.device_id)
    if report is not None:
        behind = sorted(s for s, st in report.store.streams.items() if st.backlog_records)
        if behind:
            overlay["stream_priorities"] = {s: "high" for s in behind}
    if current.batch_max_wait_s == 0.0 and len(overlay) == 1:
        return _skip("sync already runs uncapped, at any time, without waiting: nothing to raise")
    settings = EdgeConfig.model_validate(overlay).model_dump(mode="json")
    return Outcome(
        "done",
        "sync raised while the alert lasts: " + device_settings.describe(EdgeConfig(**settings)),
        {"settings": settings},
        {"settings": settings},
    )


def _rollback(session: Session, alert: Alert, rule: HealingRule, now: float) -> Outcome:
    models = _models(session, alert)
    if not models:
        return _skip("no model to roll back: the alert names none and the device reports none")
    for model in models:
        row = session.scalars(
            select(RolloutRow)
            .where(RolloutRow.model == model, RolloutRow.status.in_(sorted(machine.ACTIVE)))
            .limit(1)
        ).first()
        if row is None:
            continue
        began = alert.started_at - row.created_at
        if not 0.0 <= began <= rule.rollout_window_s:
            return _skip(
                f"rollout {row.rollout_id} of {model} did not begin within "
                f"{rule.rollout_window_s:g} s before the alert: not blamed"
            )
        device = alert.subject.device_id
        if device and device not in rollout.get(session, row.rollout_id).updated:
            return _skip(f"device {device} does not run rollout {row.rollout_id}'s version")
        rollout.control(session, row.rollout_id, "abort", f"{ACTOR}:{rule.name}", now)
        return Outcome(
            "done",
            f"rollout {row.rollout_id} of {model} v{row.to_version} aborted: its devices go back "
            f"to v{row.from_version}",
            {},
            {"rollout_id": row.rollout_id, "model": model, "version": str(row.to_version)},
        )
    return _skip(f"no active rollout of {', '.join(models)}")


def _act(
    session: Session,
    rule: HealingRule,
    alert: Alert,
    action_id: str,
    defaults: EdgeConfig,
    now: float,
) -> Outcome:
    if rule.action in MODEL_ACTIONS and not alert.subject.device_id and not alert.subject.model:
        return _skip("the alert names neither a device nor a model")
    if rule.action == "restart_model":
        return _restart(session, alert, action_id)
    if rule.action == "route_to_cloud":
        return _route(session, alert, "cloud")
    if rule.action == "route_to_edge":
        return _route(session, alert, "edge")
    if rule.action == "raise_sync_priority":
        return _raise_sync(session, alert, rule, defaults)
    if rule.action == "renew_certificate":
        return _renew(session, alert)
    return _rollback(session, alert, rule, now)


def _taken(session: Session, rule: str, key: str) -> list[float]:
    return list(
        session.scalars(
            select(HealingActionRow.taken_at).where(
                HealingActionRow.rule == rule,
                HealingActionRow.subject_key == key,
                HealingActionRow.state == "done",
            )
        )
    )


def _fleet_last_hour(session: Session, now: float) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(HealingActionRow)
            .where(HealingActionRow.state == "done", HealingActionRow.taken_at > now - 3600)
        )
        or 0
    )


def _audit(session: Session, action: HealingAction, now: float, who: str = ACTOR) -> None:
    session.commit()  # audit.append wants a session with no pending work
    audit.append(
        session,
        audit.Event(
            actor=who,
            role="system" if who == ACTOR else "",
            action=f"healing {action.action}" + (" revert" if action.reverted_at else ""),
            target=f"alert={action.alert_id},action={action.action_id}",
            client="cloud",
            result="ok" if action.state in ("done", "reverted") else "refused",
            status=200,
            detail=f"{action.rule}: {action.state}: {action.detail}"[:1000],
        ),
        now,
    )


def _store(session: Session, action: HealingAction, orders: dict[str, Any], now: float) -> None:
    row = session.get(HealingActionRow, action.action_id)
    if row is None:
        row = HealingActionRow(
            action_id=action.action_id,
            rule=action.rule,
            alert_id=action.alert_id,
            device_id=action.subject.device_id,
            subject_key=subject_key(action.subject),
            taken_at=action.taken_at,
            orders=orders,
        )
        session.add(row)
    row.state = action.state
    row.active = action.active
    row.action = action.model_dump(mode="json")
    row.updated_at = now


def _attempt(
    session: Session,
    rule: HealingRule,
    alert: Alert,
    action_id: str,
    defaults: EdgeConfig,
    now: float,
) -> Outcome:
    if rule.dry_run and rule.action == "rollback":  # the one action that changes the store
        return _skip("dry run: would abort the active rollout this alert began with, if any")
    try:
        outcome = _act(session, rule, alert, action_id, defaults, now)
    except ApiError as exc:
        session.rollback()
        return Outcome("failed", exc.message, {}, {})
    if rule.dry_run and outcome.state == "done":
        return _skip(f"dry run: would have done: {outcome.detail}")
    return outcome


def _take(
    session: Session,
    rules: HealingRules,
    rule: HealingRule,
    alert: Alert,
    defaults: EdgeConfig,
    now: float,
) -> HealingAction:
    action_id = uuid.uuid4().hex
    key = subject_key(alert.subject)
    why = refusal(
        rule, _taken(session, rule.name, key), _fleet_last_hour(session, now),
        rules.max_actions_per_hour, now,
    )  # fmt: skip
    if why is not None:
        outcome = _skip(f"rate limited: {why}")
    else:
        outcome = _attempt(session, rule, alert, action_id, defaults, now)
    action = HealingAction(
        action_id=action_id,
        rule=rule.name,
        action=rule.action,
        alert_id=alert.alert_id,
        alert_kind=alert.kind,
        subject=alert.subject,
        state=outcome.state,  # type: ignore[arg-type]
        active=outcome.state == "done" and bool(outcome.orders),
        revert=rule.revert,
        taken_at=now,
        detail=outcome.detail,
        changes=outcome.changes,
    )
    _store(session, action, outcome.orders, now)
    level = logging.WARNING if outcome.state == "done" else logging.INFO
    log.log(level, "healing %s %s on alert %s: %s", rule.name, outcome.state, alert.alert_id,
            outcome.detail)  # fmt: skip
    _audit(session, action, now)
    return action


def _still_needed(session: Session, rules: HealingRules, row: HealingActionRow) -> str | None:
    """Another firing alert on the same subject that the same rule acts on, if any."""
    rule = next((r for r in rules.rules if r.name == row.rule), None)
    if rule is None:
        return None
    others = session.scalars(
        select(AlertRow).where(
            AlertRow.subject_key == row.subject_key,
            AlertRow.state == "firing",
            AlertRow.alert_id != row.alert_id,
            AlertRow.kind.in_(rule.when),
        )
    ).first()
    return None if others is None else others.alert_id


def _end(session: Session, rules: HealingRules, alert_id: str, now: float) -> list[HealingAction]:
    """Lift the orders of the alert's on-resolve actions (it resolved).

    An action another firing alert of its rule still calls for (a backlog that grows because
    the sync stands still) is handed to that alert instead: lifting it would only let the
    first fault back and make the two alerts take turns.
    """
    ended = []
    for row in session.scalars(
        select(HealingActionRow).where(
            HealingActionRow.alert_id == alert_id, HealingActionRow.active.is_(True)
        )
    ):
        action = HealingAction.model_validate(row.action)
        if action.revert != "on_resolve":
            continue
        other = _still_needed(session, rules, row)
        if other is not None:
            _hand_over(session, row, action, other, now)
            continue
        rule = next((r for r in rules.rules if r.name == row.rule), None)
        if rule is not None and rule.hold_s > 0:
            action = action.model_copy(update={"lift_at": now + rule.hold_s})
            _store(session, action, row.orders, now)
            log.info("healing %s held %g s after alert %s resolved", action.rule, rule.hold_s,
                     alert_id)  # fmt: skip
            continue
        ended.append(_lift(session, row, action, now))
    session.commit()
    return ended


def _hand_over(
    session: Session, row: HealingActionRow, action: HealingAction, alert_id: str, now: float
) -> None:
    row.alert_id = alert_id
    action = action.model_copy(update={"alert_id": alert_id, "lift_at": None})
    _store(session, action, row.orders, now)
    log.info("healing %s goes on: alert %s calls for it", action.rule, alert_id)


def _lift(
    session: Session, row: HealingActionRow, action: HealingAction, now: float
) -> HealingAction:
    action = action.model_copy(update={"active": False, "ended_at": now, "lift_at": None})
    _store(session, action, row.orders, now)
    log.info("healing %s ended: alert %s resolved", action.rule, action.alert_id)
    return action


def _held(session: Session, rules: HealingRules, now: float) -> list[HealingAction]:
    """Lift held actions whose hold is over, unless an alert they serve fires again."""
    ended = []
    for row in session.scalars(select(HealingActionRow).where(HealingActionRow.active.is_(True))):
        action = HealingAction.model_validate(row.action)
        if action.lift_at is None or action.lift_at > now:
            continue
        other = _still_needed(session, rules, row)
        if other is not None:
            _hand_over(session, row, action, other, now)
        else:
            ended.append(_lift(session, row, action, now))
    return ended


def _adopt(session: Session, rule: str, key: str, alert: Alert, now: float) -> None:
    """A held action of ``rule`` on the subject serves ``alert`` now (no second action)."""
    for row in session.scalars(
        select(HealingActionRow).where(
            HealingActionRow.rule == rule,
            HealingActionRow.subject_key == key,
            HealingActionRow.active.is_(True),
        )
    ):
        action = HealingAction.model_validate(row.action)
        if action.lift_at is not None:
            _hand_over(session, row, action, alert.alert_id, now)


def handle(
    session: Session,
    rules: HealingRules,
    events: list[tuple[Alert, Event]],
    defaults: EdgeConfig,
    now: float,
) -> list[HealingAction]:
    """Act on fired and reopened alerts; end on-resolve actions of resolved ones.

    Actions held after their alert (``hold_s``) are lifted on the first call past their hold.
    """
    done: list[HealingAction] = []
    for alert, event in events:
        if event == "resolved":
            done += _end(session, rules, alert.alert_id, now)
        elif event in ("fired", "reopened"):
            for rule in matching(rules, alert):
                key = subject_key(alert.subject)
                if _already(session, rule.name, key):
                    _adopt(session, rule.name, key, alert, now)  # held: it serves this one
                    continue  # in force already (this alert reopened, or another one's)
                done.append(_take(session, rules, rule, alert, defaults, now))
    done += _held(session, rules, now)
    session.commit()
    return done


def _already(session: Session, rule: str, key: str) -> bool:
    return (
        session.scalars(
            select(HealingActionRow.action_id).where(
                HealingActionRow.rule == rule,
                HealingActionRow.subject_key == key,
                HealingActionRow.active.is_(True),
            )
        ).first()
        is not None
    )


def orders_for(
    session: Session, device_id: str
) -> tuple[HealingOrders | None, list[tuple[str, EdgeConfig]]]:
    """The active actions' orders for a device, and their settings overlays (as levels)."""
    rows = session.scalars(
        select(HealingActionRow)
        .where(HealingActionRow.device_id == device_id, HealingActionRow.active.is_(True))
        .order_by(HealingActionRow.taken_at)
    ).all()
    if not rows:
        return None, []
    orders = HealingOrders()
    levels: list[tuple[str, EdgeConfig]] = []
    for row in rows:
        o = row.orders
        orders.placement.update(o.get("placement", {}))
        orders.reload.update(o.get("reload", {}))
        if o.get("renew_before") is not None:
            orders.renew_before = max(orders.renew_before or 0.0, float(o["renew_before"]))
        if o.get("settings"):
            levels.append((f"healing:{row.rule}", EdgeConfig.model_validate(o["settings"])))
    empty = not (orders.placement or orders.reload or orders.renew_before)
    return (None if empty else orders), levels


def list_actions(
    session: Session, alert_id: str | None = None, device_id: str | None = None
) -> list[HealingAction]:
    query = select(HealingActionRow).order_by(HealingActionRow.taken_at.desc()).limit(MAX_ACTIONS)
    if alert_id is not None:
        query = query.where(HealingActionRow.alert_id == alert_id)
    if device_id is not None:
        query = query.where(HealingActionRow.device_id == device_id)
    return [HealingAction.model_validate(r.action) for r in session.scalars(query)]


def revert(session: Session, action_id: str, who: str, now: float) -> HealingAction:
    """An operator undoes an action: its orders are lifted; a rollback's rollout starts again."""
    row = session.get(HealingActionRow, action_id)
    if row is None:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"no healing action {action_id[:40]!r}: list them with `hybridai alerts actions`",
        )
    action = HealingAction.model_validate(row.action)
    if action.state != "done":
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"healing action {action_id} is {action.state}: only a done action can be reverted",
        )
    detail = "orders lifted"
    if action.action == "rollback":
        again = session.scalars(
            select(RolloutRow).where(RolloutRow.rollout_id == action.changes.get("rollout_id"))
        ).first()
        if again is None:
            raise ApiError(409, ErrorCode.CONFLICT, "the aborted rollout no longer exists")
        started = rollout.start(session, rollout.get(session, again.rollout_id).request, who, now)
        detail = f"rollout started again as {started.rollout_id}"
    action = action.model_copy(
        update={
            "state": "reverted",
            "active": False,
            "ended_at": action.ended_at or now,
            "reverted_at": now,
            "reverted_by": who,
            "detail": f"{action.detail}; reverted by {who}: {detail}",
        }
    )
    _store(session, action, row.orders, now)
    _audit(session, action, now, who)
    return action
