"""Retraining on drift: per-model policies, and the periodic tick that applies them.

Each tick reads the latest status report of every device that serves the deployed version,
asks ``orchestrator.drift.retraining_due`` and, when due, starts a training run with the spec
of the run that produced the deployed version (so the pipeline, its budget and its edge variant
carry over) on the lake as it is now. ``auto-to-production`` deploys the result; with
``auto-to-staged`` a later tick moves the new version to ``staged``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.context import Cloud
from hybridai.cloud.models import stages
from hybridai.cloud.pipelines import training_runs
from hybridai.orchestrator.drift import DriftObservation, RetrainingPolicy, retraining_due
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.lifecycle import RetrainingPolicySpec, RetrainingStatus
from hybridai.protocol.registry import HardExamplesSpec, TrainingSpec
from hybridai.protocol.stages import StageChange
from hybridai.storage.tables import (
    DeploymentRow,
    DeviceRow,
    ModelRow,
    ModelVersionRow,
    RetrainingPolicyRow,
    TrainingRunRow,
)

log = logging.getLogger(__name__)
ACTOR = "retraining"


def _status(row: RetrainingPolicyRow) -> RetrainingStatus:
    return RetrainingStatus(
        name=row.name,
        policy=RetrainingPolicySpec.model_validate(row.policy),
        last_triggered_at=row.last_triggered_at,
        last_reason=row.last_reason,
        last_run_id=row.last_run_id,
    )


def set_policy(
    session: Session, name: str, spec: RetrainingPolicySpec, actor: str, now: float
) -> RetrainingStatus:
    if session.get(ModelRow, name) is None:
        raise ApiError(
            404,
            ErrorCode.MODEL_NOT_FOUND,
            f"model {name!r} is not registered: train it first (`hybridai model train`)",
        )
    row = session.get(RetrainingPolicyRow, name)
    if row is None:
        row = RetrainingPolicyRow(name=name, policy={}, updated_at=now, updated_by=actor)
        session.add(row)
    row.policy, row.updated_at, row.updated_by = spec.model_dump(), now, actor
    session.commit()
    return _status(row)


def get_policy(session: Session, name: str) -> RetrainingStatus:
    row = session.get(RetrainingPolicyRow, name)
    if row is None:
        if session.get(ModelRow, name) is None:
            raise ApiError(404, ErrorCode.MODEL_NOT_FOUND, f"model {name!r} is not registered")
        return RetrainingStatus(name=name, policy=RetrainingPolicySpec())
    return _status(row)


def _observations(
    session: Session, name: str, version: int, now: float, stale_s: float
) -> list[DriftObservation]:
    found: list[DriftObservation] = []
    for device in session.scalars(select(DeviceRow).where(DeviceRow.revoked.is_(False))):
        if device.last_seen is None or now - device.last_seen > stale_s:
            continue
        drift = ((device.status or {}).get("drift") or {}).get(name)
        if not drift or drift.get("version") != str(version):
            continue
        found.append(
            DriftObservation(
                device_id=device.device_id,
                window=int(drift.get("window", 0)),
                psi_max=float(drift.get("psi_max", 0.0)),
                confidence_shift=float(drift.get("confidence_shift", 0.0)),
                hard_examples=int(drift.get("hard_examples", 0)),
            )
        )
    return found


def _spec_of(session: Session, name: str, version: int) -> TrainingSpec | None:
    """The spec that produced ``version`` (its run's, else its lineage's)."""
    run = session.scalars(
        select(TrainingRunRow)
        .where(TrainingRunRow.model_name == name, TrainingRunRow.version == version)
        .limit(1)
    ).first()
    if run is not None and run.spec:
        return TrainingSpec.model_validate(run.spec)
    row = session.get(ModelVersionRow, (name, version))
    spec = (row.lineage or {}).get("spec") if row is not None else None
    return TrainingSpec.model_validate(spec) if isinstance(spec, dict) else None


def retraining_spec(spec: TrainingSpec, policy: RetrainingPolicySpec) -> TrainingSpec:
    """The spec a retraining run uses: the deployed version's, deployed per the policy's mode.

    When the policy names a label source, the model's hard examples join the training rows.
    """
    update: dict[str, object] = {"deploy": policy.mode == "auto-to-production"}
    if policy.hard_example_labels is not None:
        kept = spec.hard_examples or HardExamplesSpec()
        update["hard_examples"] = kept.model_copy(
            update={"label_source": policy.hard_example_labels}
        )
    return spec.model_copy(update=update)


def _stage_finished_run(session: Session, row: RetrainingPolicyRow, now: float) -> None:
    run = session.get(TrainingRunRow, row.last_run_id) if row.last_run_id else None
    if run is None or run.status != "succeeded" or run.version is None:
        return
    version = session.get(ModelVersionRow, (row.name, run.version))
    if version is not None and version.stage == "candidate":
        stages.change_stage(
            session, row.name, str(run.version), StageChange(stage="staged"), ACTOR, now
        )


def tick(cloud: Cloud, now: float) -> list[str]:
    """Apply every automatic policy once; return the run ids started."""
    started: list[str] = []
    stale_s = max(3 * cloud.settings.heartbeat_interval_s, 10.0)
    with cloud.session() as session:
        rows = session.scalars(select(RetrainingPolicyRow)).all()
        for row in rows:
            wire = RetrainingPolicySpec.model_validate(row.policy)
            policy = RetrainingPolicy(**wire.model_dump(exclude={"hard_example_labels"}))
            if policy.mode == "auto-to-staged":
                _stage_finished_run(session, row, now)
            deployment = session.get(DeploymentRow, row.name)
            if policy.mode == "manual" or deployment is None:
                continue
            running = session.scalars(
                select(TrainingRunRow.run_id).where(
                    TrainingRunRow.model_name == row.name, TrainingRunRow.status == "running"
                )
            ).first()
            decision = retraining_due(
                policy,
                _observations(session, row.name, deployment.version, now, stale_s),
                now,
                row.last_triggered_at,
                running is not None,
            )
            if not decision.retrain:
                continue
            spec = _spec_of(session, row.name, deployment.version)
            if spec is None:
                row.last_reason = f"due ({decision.reason}) but no training spec is recorded"
                row.last_triggered_at = now
                session.commit()
                continue
            spec = retraining_spec(spec, wire)
            session.commit()  # end this read before the run's own unit of work writes
            run = training_runs.start(cloud, spec, ACTOR)
            log.info("retraining %s: %s (run %s)", row.name, decision.reason, run.run_id)
            row.last_triggered_at, row.last_reason, row.last_run_id = (
                now,
                decision.reason,
                run.run_id,
            )
            session.commit()
            started.append(run.run_id)
    return started


async def retraining_step(cloud: Cloud) -> float:
    """One retraining tick (a supervised loop of the app); returns the pause before the next."""
    await asyncio.to_thread(tick, cloud, time.time())
    return cloud.settings.retraining_tick_s
