"""Compliance route: the report of every control, for people with read access."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from hybridai.cloud import compliance
from hybridai.cloud.auth import cloud_of, require
from hybridai.protocol.compliance import ComplianceReport

router = APIRouter(prefix="/api/v1/compliance", tags=["compliance"])


@router.get("/report")
async def report(request: Request) -> ComplianceReport:
    """Check TLS, MFA, audit chain, certificates, devices, policies and model signatures."""
    await run_in_threadpool(require, request, "read")
    return await run_in_threadpool(compliance.report, cloud_of(request), time.time())
