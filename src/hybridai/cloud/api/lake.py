"""Lake routes: SQL over the Delta tables with DuckDB, and table versions for lineage."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.data.lake import DEFAULT_VACUUM_HOURS, LakeQueryError
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


@router.post("/query")
async def query(body: QueryRequest, request: Request) -> QueryResult:
    require(request, "read")
    lake = cloud_of(request).lake
    try:
        table = await run_in_threadpool(lake.query, body.sql)
    except LakeQueryError as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, f"query failed: {exc}") from None
    except LakeStorageError as exc:
        raise _unavailable(exc) from None
    truncated = table.num_rows > body.limit
    table = table.slice(0, body.limit)
    columns = table.column_names
    pylists = [table.column(c).to_pylist() for c in columns]
    rows = [[_jsonable(col[i]) for col in pylists] for i in range(table.num_rows)]
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


@router.get("/tables")
async def tables(request: Request) -> dict[str, int]:
    """Current Delta table version per dataset."""
    require(request, "read")
    try:
        return await run_in_threadpool(cloud_of(request).lake.versions)
    except LakeStorageError as exc:
        raise _unavailable(exc) from None


class MaintenanceRequest(BaseModel):
    dataset: str
    action: Literal["optimize", "vacuum"]
    retain_hours: float = Field(
        default=DEFAULT_VACUUM_HOURS,
        ge=0,
        description="vacuum: keep the files of versions younger than this (time travel window).",
    )


class MaintenanceResult(BaseModel):
    dataset: str
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
            done = lake.optimize(body.dataset)
        else:
            done = lake.vacuum(body.dataset, body.retain_hours)
        files_now = lake.files(body.dataset)
    except LookupError as exc:
        message = f"{exc.args[0]}: see `hybridai lake tables`"
        raise ApiError(404, ErrorCode.NOT_FOUND, message) from None
    except ValueError as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, str(exc)) from None
    except LakeStorageError as exc:
        raise _unavailable(exc) from None
    return MaintenanceResult(dataset=body.dataset, action=body.action, files_now=files_now, **done)


@router.post("/maintenance")
async def maintenance(body: MaintenanceRequest, request: Request) -> MaintenanceResult:
    """Compact a dataset's small files (optimize) or delete files past retention (vacuum)."""
    await run_in_threadpool(require, request, "operate")
    return await run_in_threadpool(_maintain, request, body)
