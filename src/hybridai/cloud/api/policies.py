"""Data policy routes: declare and read per-stream policies; apply lake retention."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from hybridai.cloud import policies
from hybridai.cloud.auth import cloud_of, require
from hybridai.protocol.policy import DataPolicy, PolicySpec, RetentionResult

router = APIRouter(prefix="/api/v1", tags=["policies"])


@router.get("/policies")
def list_policies(request: Request) -> list[DataPolicy]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return policies.list_policies(session)


@router.get("/policies/{stream}")
def get_policy(stream: str, request: Request) -> DataPolicy:
    require(request, "read")
    with cloud_of(request).session() as session:
        return policies.get_policy(session, stream)


@router.put("/policies/{stream}")
def put_policy(stream: str, spec: PolicySpec, request: Request) -> DataPolicy:
    """Declare the stream's policy; every edge applies it from its next desired state."""
    who = require(request, "operate")
    with cloud_of(request).session() as session:
        return policies.put_policy(session, stream, spec, who.name, time.time())


def _retention(request: Request) -> RetentionResult:
    cloud = cloud_of(request)
    with cloud.session() as session:
        return policies.apply_lake_retention(session, cloud.lake, time.time())


@router.post("/lake/retention")
async def apply_retention(request: Request) -> RetentionResult:
    """Delete lake rows older than each stream's lake retention period (per policy)."""
    await run_in_threadpool(require, request, "operate")
    return await run_in_threadpool(_retention, request)
