"""Lake routes: SQL over the Delta tables with DuckDB, and table versions for lineage."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.lake import LakeQueryError
from hybridai.protocol.errors import ApiError, ErrorCode

router = APIRouter(prefix="/api/v1/lake", tags=["lake"])


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
    return await run_in_threadpool(cloud_of(request).lake.versions)
