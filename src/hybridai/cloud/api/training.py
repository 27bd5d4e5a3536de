"""Training routes: start a run on lake data, follow it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.pipelines import training_runs
from hybridai.protocol.registry import TrainingRun, TrainingSpec

router = APIRouter(prefix="/api/v1", tags=["training"])


@router.post("/training-runs", status_code=202)
def start_run(spec: TrainingSpec, request: Request) -> TrainingRun:
    who = require(request, "train")
    return training_runs.start(cloud_of(request), spec, who.name)


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
