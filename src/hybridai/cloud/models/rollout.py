"""Rollout driver: persists rollouts, feeds them the devices' reports, pins versions per device.

The decisions are the pure state machine's (``hybridai.orchestrator.rollout``); this module
only reads the reports the devices sent, stores the new state and makes desired state follow
it through per-device pins (``DeviceModelPinRow``, read by ``desired_state.desired_state``): the
devices of the current waves are pinned to the new version, every other device runs the
fleet's deployment. An abort removes the pins (restoring any a previous rollout had set), so
every device goes back to the version it ran. A succeeded rollout, whatever its target,
becomes the deployment (registry stage ``production``): devices enrolled afterwards get its
version and the next rollout starts from it. Devices it did not update keep what they ran: the
ones on the old deployment are pinned to it first. At most one rollout per model is active; a
finished or aborted one never blocks the next.

Devices of the target whose recorded capabilities rule the version out (the policy's needs,
or too little memory for its artifact) are skipped at the start, with the reason, rather than
left to time out in a wave; like the devices outside the target they keep the version they
run once the rollout becomes the deployment.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hybridai.cloud.models import registry, targets
from hybridai.orchestrator import rollout as machine
from hybridai.orchestrator.rollout import (
    DeviceReport,
    HealthGates,
    RolloutPlan,
    RolloutState,
    Step,
    Verdict,
)
from hybridai.orchestrator.targeting import unmet
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.rollout import Rollout, RolloutRequest, SkippedDevice
from hybridai.storage.tables import DeploymentRow, DeviceModelPinRow, DeviceRow, RolloutRow

log = logging.getLogger(__name__)


def _plan_of(row: RolloutRow) -> RolloutPlan:
    p = dict(row.plan["machine"])
    return RolloutPlan(**{**p, "devices": tuple(p["devices"]), "gates": HealthGates(**p["gates"])})


def _state_of(row: RolloutRow) -> RolloutState:
    s = row.state
    return RolloutState(
        status=s["status"],
        steps=tuple(Step(**{**st, "devices": tuple(st["devices"])}) for st in s["steps"]),
        reason=s["reason"],
        updated_at=s["updated_at"],
        verdicts=tuple(Verdict(**v) for v in s["verdicts"]),
    )


def _to_wire(row: RolloutRow) -> Rollout:
    state = _state_of(row)
    return Rollout.model_validate(
        {
            "rollout_id": row.rollout_id,
            "model": row.model,
            "from_version": str(row.from_version),
            "to_version": str(row.to_version),
            "status": state.status,
            "reason": state.reason,
            "step": state.step,
            "steps": [asdict(s) for s in state.steps],
            "devices": list(_plan_of(row).devices),
            "skipped": row.plan.get("skipped", []),
            "updated": sorted(machine.assigned(state)),
            "verdicts": [asdict(v) for v in state.verdicts],
            "request": row.plan["request"],
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "created_by": row.created_by,
        }
    )


def _active(session: Session, model: str) -> RolloutRow | None:
    return session.scalars(
        select(RolloutRow).where(
            RolloutRow.model == model, RolloutRow.status.in_(sorted(machine.ACTIVE))
        )
    ).first()


def start(session: Session, request: RolloutRequest, actor: str, now: float) -> Rollout:
    """Create a rollout and start its canary now; 409 while another is active for the model."""
    info = registry.get_version(session, request.model, request.version)
    deployment = session.get(DeploymentRow, request.model)
    if deployment is None:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"model {request.model!r} runs nowhere yet, so there is nothing to roll back to: "
            f"deploy a first version with `hybridai model deploy {request.model} VERSION`",
        )
    running = _active(session, request.model)
    if running is not None:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"rollout {running.rollout_id} of {request.model!r} is {running.status}: wait for "
            f"it, or `hybridai rollout abort {running.rollout_id}`",
        )
    needs = targets.policy_needs(deployment.policy, targets.served_size(info))
    selection = targets.select_devices(session, request.target, needs)
    skipped = [SkippedDevice(device_id=s.device_id, reason=s.reason) for s in selection.skipped]
    if skipped and not selection.devices:
        listed = "; ".join(f"{s.device_id}: {s.reason}" for s in skipped)
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"no device of the target can run {request.model} v{info.version}: {listed}",
        )
    g = request.gates
    plan = RolloutPlan(
        model=request.model,
        from_version=str(deployment.version),
        to_version=info.version,
        devices=selection.devices,
        canary_share=request.canary_share,
        step_share=request.step_share,
        soak_s=request.soak_s,
        abort_unhealthy_share=request.abort_unhealthy_share,
        device_timeout_s=request.device_timeout_s,
        traffic_timeout_s=request.traffic_timeout_s,
        gates=HealthGates(**g.model_dump()),
    )
    if plan.problems():
        raise ApiError(400, ErrorCode.INVALID_INPUT, "; ".join(plan.problems()))
    previous = {
        pin.device_id: pin.version
        for pin in session.scalars(
            select(DeviceModelPinRow).where(
                DeviceModelPinRow.name == request.model,
                DeviceModelPinRow.device_id.in_(plan.devices),
            )
        )
    }
    row = RolloutRow(
        rollout_id=uuid.uuid4().hex[:12],
        model=request.model,
        from_version=deployment.version,
        to_version=int(info.version),
        status="pending",
        plan={
            "machine": asdict(plan),
            "request": request.model_dump(mode="json"),
            "previous_pins": previous,
            "skipped": [s.model_dump(mode="json") for s in skipped],
        },
        state=asdict(RolloutState(updated_at=now)),
        created_at=now,
        updated_at=now,
        created_by=actor,
    )
    session.add(row)
    _step(session, row, now)
    session.commit()
    return _to_wire(row)


def _report(row: DeviceRow | None, device_id: str, plan: RolloutPlan) -> DeviceReport:
    status: dict[str, Any] = (row.status or {}) if row is not None else {}
    loaded: dict[str, Any] = next(
        (m for m in status.get("models", []) if m.get("name") == plan.model), {}
    )
    health = {
        h.get("version"): h for h in status.get("model_health", []) if h.get("name") == plan.model
    }
    new = health.get(plan.to_version, {})
    old = health.get(plan.from_version, {})
    return DeviceReport(
        device_id=device_id,
        reported_at=None if row is None else row.last_seen,
        version=loaded.get("version") if loaded.get("state") == "ready" else None,
        failed_version=loaded.get("failed_version"),
        error=loaded.get("error"),
        requests=int(new.get("requests", 0)),
        errors=int(new.get("errors", 0)),
        escalations=int(new.get("escalations", 0)),
        p99_ms=new.get("p99_ms"),
        confidence_mean=new.get("confidence_mean"),
        baseline_confidence=old.get("confidence_mean"),
    )


def _step(session: Session, row: RolloutRow, now: float) -> None:
    """Advance one rollout, store its state and make the pins follow it."""
    plan = _plan_of(row)
    devices = {
        d.device_id: d
        for d in session.scalars(select(DeviceRow).where(DeviceRow.device_id.in_(plan.devices)))
    }
    reports = {d: _report(devices.get(d), d, plan) for d in plan.devices}
    before = _state_of(row)
    state = machine.advance(plan, before, reports, now)
    if (state.status, len(state.steps)) != (before.status, len(before.steps)):
        log.info(
            "rollout %s of %s v%s: %s, %d devices updated (%s)",
            row.rollout_id,
            plan.model,
            plan.to_version,
            state.status,
            len(state.updated),
            state.reason,
        )
    _store(session, row, plan, state, now)


def _store(
    session: Session, row: RolloutRow, plan: RolloutPlan, state: RolloutState, now: float
) -> None:
    row.state = asdict(state)
    row.status = state.status
    row.updated_at = now
    wanted = machine.assigned(state)
    previous: dict[str, int] = row.plan.get("previous_pins", {})
    for device in plan.devices:
        pin = session.get(DeviceModelPinRow, (device, plan.model))
        if device in wanted:
            if pin is None:
                pin = DeviceModelPinRow(device_id=device, name=plan.model, updated_at=now)
                session.add(pin)
            if pin.rollout_id != row.rollout_id:
                pin.version, pin.rollout_id, pin.updated_at = (
                    int(plan.to_version),
                    row.rollout_id,
                    now,
                )
        elif pin is not None and pin.rollout_id == row.rollout_id:
            if device in previous:  # what an earlier rollout had pinned here
                pin.version, pin.rollout_id, pin.updated_at = previous[device], None, now
            else:
                session.delete(pin)
    if state.status == "succeeded":
        _promote(session, row, plan, now)


def _promote(session: Session, row: RolloutRow, plan: RolloutPlan, now: float) -> None:
    """A rollout that succeeded becomes the deployment; its own pins are then moot."""
    deployment = session.get(DeploymentRow, plan.model)
    policy = (
        None
        if deployment is None or deployment.policy is None
        else PlacementPolicy.model_validate(deployment.policy)
    )
    session.flush()
    session.execute(
        delete(DeviceModelPinRow).where(
            DeviceModelPinRow.name == plan.model, DeviceModelPinRow.rollout_id == row.rollout_id
        )
    )
    _keep_others(session, row, plan, now)
    session.commit()
    registry.set_deployment(
        session, plan.model, plan.to_version, f"rollout {row.rollout_id}", now, policy=policy
    )


def _keep_others(session: Session, row: RolloutRow, plan: RolloutPlan, now: float) -> None:
    """Pin the devices the rollout did not update to what they run, before the deployment moves.

    Those are the skipped devices and every device outside the target. A device the model's
    policy rules out altogether runs no version of it, so needs no pin; one that holds a pin
    already (an earlier rollout's) keeps that one.
    """
    deployment = session.get(DeploymentRow, plan.model)
    if deployment is None:
        return
    needs = targets.policy_needs(deployment.policy)
    updated = set(plan.devices)
    pinned = set(
        session.scalars(
            select(DeviceModelPinRow.device_id).where(DeviceModelPinRow.name == plan.model)
        )
    )
    for device in session.scalars(select(DeviceRow).order_by(DeviceRow.device_id)):
        if device.device_id in updated or device.device_id in pinned:
            continue
        if unmet(needs, targets.device_facts(device)) is None:
            session.add(
                DeviceModelPinRow(
                    device_id=device.device_id,
                    name=plan.model,
                    version=deployment.version,
                    rollout_id=row.rollout_id,
                    updated_at=now,
                )
            )


def tick(session: Session, now: float) -> list[Rollout]:
    """Advance every active rollout once (the cloud's periodic task calls this)."""
    rows = session.scalars(
        select(RolloutRow)
        .where(RolloutRow.status.in_(sorted(machine.ACTIVE)))
        .order_by(RolloutRow.created_at)
        .with_for_update()
    ).all()
    for row in rows:
        _step(session, row, now)
    session.commit()
    return [_to_wire(row) for row in rows]


def _row(session: Session, rollout_id: str) -> RolloutRow:
    row = session.get(RolloutRow, rollout_id[:32])
    if row is None:
        raise ApiError(
            404, ErrorCode.NOT_FOUND, f"no rollout {rollout_id!r}: see `hybridai rollout status`"
        )
    return row


def get(session: Session, rollout_id: str) -> Rollout:
    return _to_wire(_row(session, rollout_id))


def list_rollouts(session: Session, model: str | None = None) -> list[Rollout]:
    query = select(RolloutRow).order_by(RolloutRow.created_at.desc())
    if model:
        query = query.where(RolloutRow.model == model)
    return [_to_wire(row) for row in session.scalars(query)]


def control(session: Session, rollout_id: str, action: str, actor: str, now: float) -> Rollout:
    """``pause``, ``resume`` or ``abort`` a rollout; 409 when its status does not allow it."""
    row = _row(session, rollout_id)
    state = _state_of(row)
    try:
        if action == "pause":
            state = machine.pause(state, now)
        elif action == "resume":
            state = machine.resume(state, now)
        elif action == "abort":
            state = machine.abort(state, f"aborted by {actor}", now)
        else:
            raise ValueError(action)
    except machine.RolloutConflict as exc:
        raise ApiError(409, ErrorCode.CONFLICT, f"rollout {rollout_id}: {exc}") from None
    _store(session, row, _plan_of(row), state, now)
    if action == "resume":
        _step(session, row, now)
    session.commit()
    return _to_wire(row)
