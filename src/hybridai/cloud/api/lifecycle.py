"""Model lifecycle routes: retraining policies, offline bundles, a version's training rows."""

from __future__ import annotations

import io
import time
from functools import partial

import pyarrow.parquet as pq
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hybridai.cloud import policies
from hybridai.cloud.api.lake import query_error, query_limits, readable_by
from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.data.lake import LakeQueryError
from hybridai.cloud.data.lake_query import QueryLimitExceeded, StreamNotGranted, run_query
from hybridai.cloud.models import bundle, registry
from hybridai.cloud.pipelines import retraining
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.lifecycle import RetrainingPolicySpec, RetrainingStatus

router = APIRouter(prefix="/api/v1", tags=["lifecycle"])
PARQUET = "application/vnd.apache.parquet"


@router.get("/models/{name}/retraining")
def get_retraining(name: str, request: Request) -> RetrainingStatus:
    require(request, "read")
    with cloud_of(request).session() as session:
        return retraining.get_policy(session, name)


@router.put("/models/{name}/retraining")
def put_retraining(name: str, spec: RetrainingPolicySpec, request: Request) -> RetrainingStatus:
    who = require(request, "train")
    with cloud_of(request).session() as session:
        return retraining.set_policy(session, name, spec, who.name, time.time())


@router.get("/models/{name}/versions/{version}/bundle")
def get_bundle(name: str, version: str, request: Request) -> Response:
    """A tar an edge can start from with no cloud: ``hybridai edge run --bundle``."""
    require(request, "read")
    cloud = cloud_of(request)
    with cloud.session() as session:
        data = bundle.build(
            session,
            cloud.blobs,
            name,
            version,
            cloud.signing_key,
            policies.list_policies(session),
        )
    return Response(data, media_type="application/x-tar")


@router.get("/models/{name}/versions/{version}/training-rows")
async def training_rows(name: str, version: str, request: Request) -> Response:
    """The rows the version's training query read, by time travel to the recorded versions."""
    who = require(request, "read")
    cloud = cloud_of(request)
    with cloud.session() as session:
        info = registry.get_version(session, name, version)
    readable = await run_in_threadpool(readable_by, cloud, who)
    query, versions = info.lineage.get("query"), info.lineage.get("table_versions")
    if not isinstance(query, str) or not isinstance(versions, dict):
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"{name} v{info.version} records no lake lineage (it was uploaded, not trained)",
        )
    try:
        result = await run_in_threadpool(
            partial(
                run_query,
                cloud.lake,
                query,
                versions=versions,
                readable=readable,
                limits=query_limits(cloud),
            )
        )
        table = result.table
    except (StreamNotGranted, QueryLimitExceeded) as exc:
        raise query_error(exc) from None
    except LakeQueryError as exc:
        raise ApiError(
            410,
            ErrorCode.NOT_FOUND,
            f"the lake can no longer read the versions {name} v{info.version} was trained on "
            f"({exc}): retention or vacuum removed them",
        ) from None
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return Response(
        buffer.getvalue(),
        media_type=PARQUET,
        headers={"X-Table-Versions": ",".join(f"{k}={v}" for k, v in sorted(versions.items()))},
    )
