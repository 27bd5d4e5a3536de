"""Model registry routes: upload versions, read them, deploy them, download artifacts."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response, UploadFile
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import cloud_of, principal, require
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.models import registry, stages
from hybridai.cloud.pipelines import calibration, hard_examples
from hybridai.cloud.pipelines.calibration_rows import read_parquet, recorded_test_rows
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import CalibrationReport, CalibrationRequest, Variant
from hybridai.protocol.registry import (
    Deployment,
    HardExampleLabels,
    HardExampleSummary,
    ModelSummary,
    ModelVersionInfo,
)
from hybridai.protocol.stages import StageChange, VersionComparison

router = APIRouter(prefix="/api/v1", tags=["models"])


@router.get("/models")
def list_models(request: Request) -> list[ModelSummary]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return registry.list_models(session)


@router.post("/models/{name}/versions", status_code=201)
async def upload_version(
    name: str,
    request: Request,
    edge: UploadFile | None = None,
    cloud: UploadFile | None = None,
    metrics: Annotated[str, Form()] = "{}",
    test_data: UploadFile | None = None,
    label: Annotated[str | None, Form()] = None,
    features: Annotated[str | None, Form()] = None,
) -> ModelVersionInfo:
    """Register a new version from uploaded ONNX files (form fields ``edge`` and/or ``cloud``).

    ``test_data``: the model's test rows as Parquet (``label`` names the label column,
    ``features`` the feature columns, comma-separated); only their content hashes are kept,
    so that ``calibrate`` can refuse them later.
    """
    who = require(request, "train")
    artifacts = {v: await f.read() for v, f in (("edge", edge), ("cloud", cloud)) if f}
    if not artifacts:
        raise ApiError(
            400, ErrorCode.BAD_REQUEST, "upload at least one ONNX file as form field edge or cloud"
        )
    try:
        parsed_metrics = json.loads(metrics)
    except json.JSONDecodeError:
        raise ApiError(400, ErrorCode.MALFORMED_JSON, "the metrics field is not JSON") from None
    lineage: dict[str, Any] = {"source": "upload"}
    if test_data is not None:
        table = read_parquet(await test_data.read(), "test_data")
        names = [f.strip() for f in features.split(",") if f.strip()] if features else None
        lineage["test_rows"] = recorded_test_rows(table, label, names)
    ctx = cloud_of(request)
    with ctx.session() as session:
        return registry.register_version(
            session,
            ctx.blobs,
            name,
            artifacts,
            parsed_metrics,
            lineage,
            who.name,
            time.time(),
            signing_key=ctx.signing_key,
        )


@router.get("/models/{name}/versions/{version}")
def get_version(name: str, version: str, request: Request) -> ModelVersionInfo:
    require(request, "read")
    with cloud_of(request).session() as session:
        return registry.get_version(session, name, version)


@router.get("/models/{name}/versions/{version}/artifacts/{variant}")
def download_artifact(name: str, version: str, variant: Variant, request: Request) -> Response:
    """The ONNX bytes; devices may download only what their desired state assigns them."""
    who = principal(request)
    ctx = cloud_of(request)
    with ctx.session() as session:
        if who.kind == "device":
            assigned = desired_state(session, who.name, {}).models
            if not any(
                (m.name, m.version, m.variant) == (name, version, variant) for m in assigned
            ):
                raise ApiError(
                    403,
                    ErrorCode.FORBIDDEN,
                    f"device '{who.name}' is not assigned {name} v{version} ({variant})",
                )
        data = registry.read_artifact(session, ctx.blobs, name, version, variant)
    return Response(data, media_type="application/octet-stream")


@router.get("/deployments")
def list_deployments(request: Request) -> list[Deployment]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return registry.get_deployments(session)


@router.put("/deployments/{name}")
def deploy(name: str, body: Deployment, request: Request) -> Deployment:
    """Make ``body.version`` the version every edge should run, placed by ``body.policy``."""
    who = require(request, "operate")
    if body.name != name:
        raise ApiError(400, ErrorCode.BAD_REQUEST, "the body's name must match the URL's")
    with cloud_of(request).session() as session:
        if body.policy is not None and body.policy.batching is not None:
            registry.refuse_unbatchable(session, name, body.version)
        return registry.set_deployment(
            session, name, body.version, who.name, time.time(), policy=body.policy
        )


@router.post("/models/{name}/versions/{version}/calibration")
def calibrate(
    name: str, version: str, body: CalibrationRequest, request: Request
) -> CalibrationReport:
    """Fit the cascade threshold on validation rows (the version's own, or a lake query's)."""
    require(request, "train")
    ctx = cloud_of(request)
    with ctx.session() as session:
        return calibration.calibrate(session, ctx.blobs, ctx.lake, name, version, body)


def _may_train(request: Request) -> None:
    require(request, "train")


# The permission is a dependency, so it is checked before the form: a viewer gets 403, not 400
@router.post(
    "/models/{name}/versions/{version}/calibration/data", dependencies=[Depends(_may_train)]
)
async def calibrate_on_file(
    name: str,
    version: str,
    request: Request,
    data: UploadFile,
    settings: Annotated[str, Form()] = "{}",
) -> CalibrationReport:
    """Fit the cascade threshold on labelled rows uploaded as Parquet (any version).

    ``settings``: the calibration request as JSON (targets, measure, ``label``, ``features``).
    """
    try:
        body = CalibrationRequest.model_validate_json(settings)
    except ValidationError as error:
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            "settings is not a calibration request: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()),
        ) from None
    table = read_parquet(await data.read(), "the data file")
    ctx = cloud_of(request)

    def fit() -> CalibrationReport:
        with ctx.session() as session:
            return calibration.calibrate(
                session, ctx.blobs, ctx.lake, name, version, body, data=table
            )

    return await run_in_threadpool(fit)


@router.post("/models/{name}/versions/{version}/stage")
def change_stage(name: str, version: str, body: StageChange, request: Request) -> ModelVersionInfo:
    """Stage a version (train), or make it production / archive it (operate)."""
    who = require(request, "train" if body.stage == "staged" else "operate")
    with cloud_of(request).session() as session:
        stages.change_stage(session, name, version, body, who.name, time.time())
        return registry.get_version(session, name, version)


@router.get("/models/{name}/compare")
def compare_versions(name: str, a: str, b: str, request: Request) -> VersionComparison:
    require(request, "read")
    with cloud_of(request).session() as session:
        return stages.compare(session, name, a, b)


@router.get("/models/{name}/hard-examples")
def hard_example_summary(name: str, request: Request) -> HardExampleSummary:
    """How many escalations of ``name`` the lake holds, and how many rows people labelled."""
    require(request, "read")
    return hard_examples.summary(cloud_of(request).lake, name)


@router.post("/models/{name}/hard-examples/labels", dependencies=[Depends(_may_train)])
def label_hard_examples(name: str, body: HardExampleLabels, request: Request) -> dict[str, int]:
    """Store people's labels for rows of hard examples (training with label_source human)."""
    who = require(request, "train")  # checked before the body too (the dependency): 403, not 400
    version = hard_examples.add_labels(
        cloud_of(request).lake, name, body.labels, who.name, time.time()
    )
    return {"stored": len(body.labels), "table_version": version}
