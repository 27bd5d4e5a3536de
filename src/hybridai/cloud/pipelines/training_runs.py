"""Training runs as recorded jobs: lake data in, a registered (and deployed) version out.

A run is recorded before it starts and updated when it ends, so a failed run leaves its error
for the operator instead of vanishing; the fleet keeps its current version on failure.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy.orm import Session

from hybridai.cloud.context import Cloud
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines import training
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.registry import TrainingRun, TrainingSpec
from hybridai.storage.tables import TrainingRunRow

log = logging.getLogger(__name__)


def _as_run(row: TrainingRunRow) -> TrainingRun:
    return TrainingRun(
        run_id=row.run_id,
        model_name=row.model_name,
        status=row.status,  # type: ignore[arg-type]
        version=None if row.version is None else str(row.version),
        metrics=row.metrics or {},
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def get_run(session: Session, run_id: str) -> TrainingRun:
    row = session.get(TrainingRunRow, run_id)
    if row is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"no training run '{run_id}'")
    return _as_run(row)


def list_runs(session: Session) -> list[TrainingRun]:
    rows = session.query(TrainingRunRow).order_by(TrainingRunRow.started_at.desc()).all()
    return [_as_run(r) for r in rows]


def start(cloud: Cloud, spec: TrainingSpec, actor: str) -> TrainingRun:
    """Record a run and queue it on the cloud's training worker."""
    run_id = uuid.uuid4().hex[:16]
    with cloud.session() as session:
        row = TrainingRunRow(
            run_id=run_id,
            model_name=spec.model_name,
            status="running",
            version=None,
            metrics={},
            error=None,
            spec=spec.model_dump(),
            started_at=time.time(),
            finished_at=None,
        )
        session.add(row)
        session.flush()
        run = _as_run(row)
    cloud.jobs.submit(execute, cloud, run_id, spec, actor)
    return run


def execute(cloud: Cloud, run_id: str, spec: TrainingSpec, actor: str) -> None:
    """Train, register, optionally deploy; record the outcome either way."""
    try:
        result = training.train(cloud.lake, spec)
        with cloud.session() as session:
            info = registry.register_version(
                session,
                cloud.blobs,
                spec.model_name,
                result.artifacts,
                {**result.metrics, "edge_variant": result.edge_variant},
                {**result.lineage, "run_id": run_id},
                actor,
                time.time(),
                signing_key=cloud.signing_key,
            )
            if spec.deploy:
                registry.set_deployment(session, spec.model_name, info.version, actor, time.time())
        status, version, error = "succeeded", int(info.version), None
        metrics: dict[str, Any] = {**result.metrics, "edge_variant": result.edge_variant}
    except Exception as exc:  # a failed run is recorded, never raised into the worker
        log.exception("training run %s failed", run_id)
        status, version, metrics, error = "failed", None, {}, f"{type(exc).__name__}: {exc}"
    took: float | None = None
    with cloud.session() as session:
        row = session.get(TrainingRunRow, run_id)
        if row is not None:
            row.status, row.version, row.metrics, row.error = status, version, metrics, error
            row.finished_at = time.time()
            took = row.finished_at - row.started_at
    cloud.metrics.training_runs.labels(status).inc()
    if took is not None:
        cloud.metrics.training_duration.observe(took)
    log.info("training run %s of model %s %s", run_id, spec.model_name, status)
