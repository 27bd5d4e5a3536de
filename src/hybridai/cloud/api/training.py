"""Training routes: start a run on lake data, follow it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hybridai.cloud.api.lake import query_error, readable_by
from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.data.lake import LakeQueryError
from hybridai.cloud.data.lake_query import StreamNotGranted, check_readable
from hybridai.cloud.pipelines import training_runs
from hybridai.protocol.registry import TrainingRun, TrainingSpec

router = APIRouter(prefix="/api/v1", tags=["training"])


@router.post("/training-runs", status_code=202)
def start_run(spec: TrainingSpec, request: Request) -> TrainingRun:
    who = require(request, "train")
    cloud = cloud_of(request)
    try:  # a run reads only streams its starter may read
        check_readable(cloud.lake, spec.query, readable_by(cloud, who))
    except StreamNotGranted as exc:
        raise query_error(exc) from None
    except LakeQueryError:
        pass  # the run itself reports a query that does not run, as today
    return training_runs.start(cloud, spec, who.name)


@router.get("/training-runs")
def list_runs(request: Request) -> list[TrainingRun]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return training_runs.list_runs(session)


@router.get("/training-runs/{run_id}")
def get_run(run_id: str, request: Request) -> TrainingRun:
    require(request, "read")
    with cloud_of(request).session() as session:
        return training_runs.get_run(session, run_id)
