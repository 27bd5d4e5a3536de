"""Lake routes: SQL over the Delta tables with DuckDB, and table versions for lineage."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
from collections.abc import Collection
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import Principal, cloud_of, require
from hybridai.cloud.context import Cloud
from hybridai.cloud.data import lake_grants
from hybridai.cloud.data.lake import DEFAULT_VACUUM_HOURS, LakeQueryError
from hybridai.cloud.data.lake_grants import LakeGrant
from hybridai.cloud.data.lake_query import (
    QueryHandle,
    QueryLimitExceeded,
    QueryLimits,
    StreamNotGranted,
    run_query,
)
from hybridai.cloud.data.lake_storage import LakeStorageError
from hybridai.protocol.errors import ApiError, ErrorCode

router = APIRouter(prefix="/api/v1/lake", tags=["lake"])


def _unavailable(exc: LakeStorageError) -> ApiError:
    """The lake's storage (a folder or an S3 bucket) failed: for the operator to fix."""
    return ApiError(503, ErrorCode.UPSTREAM_UNAVAILABLE, f"{exc}; try again once it is fixed")


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1)
    limit: int = Field(default=10_000, ge=1, le=1_000_000)


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def query_limits(cloud: Cloud) -> QueryLimits:
    settings = cloud.settings
    return QueryLimits(
        memory_mb=settings.lake_query_memory_mb,
        timeout_s=settings.lake_query_timeout_s,
        max_rows=settings.lake_query_max_rows,
    )


def readable_by(cloud: Cloud, who: Principal) -> Collection[str] | None:
    """The streams ``who`` may read (None: all), from the lake's read grants."""
    with cloud.session() as session:
        return lake_grants.readable(session, who.role, who.name)


def query_error(exc: LakeQueryError) -> ApiError:
    if isinstance(exc, StreamNotGranted):
        return ApiError(403, ErrorCode.FORBIDDEN, str(exc))
    if isinstance(exc, QueryLimitExceeded):
        return ApiError(422, ErrorCode.QUERY_LIMIT, str(exc))
    return ApiError(400, ErrorCode.INVALID_INPUT, f"query failed: {exc}")


@router.post("/query")
async def query(body: QueryRequest, request: Request) -> QueryResult:
    """Run SQL over the streams the caller may read, within the cloud's query limits.

    The query is interrupted when it runs past its time limit or its client disconnects, so
    an abandoned query does not keep a core busy.
    """
    who = require(request, "read")
    cloud = cloud_of(request)
    readable = await run_in_threadpool(readable_by, cloud, who)
    handle = QueryHandle()
    work = asyncio.ensure_future(
        run_in_threadpool(
            run_query,
            cloud.lake,
            body.sql,
            readable=readable,
            limits=query_limits(cloud),
            max_rows=body.limit,
            handle=handle,
        )
    )
    try:
        while not work.done():
            await asyncio.wait({work}, timeout=0.5)
            if not work.done() and await request.is_disconnected():
                handle.cancel()
        result = work.result()
    except LakeQueryError as exc:
        raise query_error(exc) from None
    except LakeStorageError as exc:
        raise _unavailable(exc) from None
    finally:
        if not work.done():
            handle.cancel()
    table = result.table
    columns = table.column_names
    pylists = [table.column(c).to_pylist() for c in columns]
    rows = [[_jsonable(col[i]) for col in pylists] for i in range(table.num_rows)]
    return QueryResult(columns=columns, rows=rows, truncated=result.truncated)


class GrantRequest(BaseModel):
    kind: Literal["role", "user"]
    name: str = Field(min_length=1, max_length=190)


@router.get("/grants")
def list_grants(request: Request, stream: str | None = None) -> list[LakeGrant]:
    """Every read grant on lake streams (admins read every stream without one)."""
    require(request, "admin")
    with cloud_of(request).session() as session:
        return lake_grants.list_grants(session, stream)


@router.put("/grants/{stream}")
def grant(stream: str, body: GrantRequest, request: Request) -> LakeGrant:
    """Let a role or a user read a stream's rows through lake queries."""
    who = require(request, "admin")
    with cloud_of(request).session() as session:
        return lake_grants.grant(session, stream, body.kind, body.name, who.name, time.time())


@router.delete("/grants/{stream}/{kind}/{name}", status_code=204)
def revoke(stream: str, kind: str, name: str, request: Request) -> None:
    require(request, "admin")
    with cloud_of(request).session() as session:
        lake_grants.revoke(session, stream, kind, name)


@router.get("/tables")
async def tables(request: Request) -> dict[str, int]:
    """Current Delta table version per stream."""
    require(request, "read")
    try:
        return await run_in_threadpool(cloud_of(request).lake.versions)
    except LakeStorageError as exc:
        raise _unavailable(exc) from None


class MaintenanceRequest(BaseModel):
    stream: str
    action: Literal["optimize", "vacuum"]
    retain_hours: float = Field(
        default=DEFAULT_VACUUM_HOURS,
        ge=0,
        description="vacuum: keep the files of versions younger than this (time travel window).",
    )


class MaintenanceResult(BaseModel):
    stream: str
    action: str
    version: int
    files_added: int = 0
    files_removed: int = 0
    files_deleted: int = 0
    files_now: int


def _maintain(request: Request, body: MaintenanceRequest) -> MaintenanceResult:
    lake = cloud_of(request).lake
    try:
        if body.action == "optimize":
            done = lake.optimize(body.stream)
        else:
            done = lake.vacuum(body.stream, body.retain_hours)
        files_now = lake.files(body.stream)
    except LookupError as exc:
        message = f"{exc.args[0]}: see `hybridai lake tables`"
        raise ApiError(404, ErrorCode.NOT_FOUND, message) from None
    except ValueError as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, str(exc)) from None
    except LakeStorageError as exc:
        raise _unavailable(exc) from None
    return MaintenanceResult(stream=body.stream, action=body.action, files_now=files_now, **done)


@router.post("/maintenance")
async def maintenance(body: MaintenanceRequest, request: Request) -> MaintenanceResult:
    """Compact a stream's small files (optimize) or delete files past retention (vacuum)."""
    await run_in_threadpool(require, request, "operate")
    return await run_in_threadpool(_maintain, request, body)
