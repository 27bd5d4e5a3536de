"""Audit routes: read the hash-chained log with filters, and verify the chain."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from hybridai.cloud.auth import cloud_of, require
from hybridai.governance import audit
from hybridai.protocol.people import AuditEntry, AuditVerification

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("")
def list_audit(
    request: Request,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    target: Annotated[str | None, Query(max_length=500)] = None,
    result: Annotated[str | None, Query(max_length=16)] = None,
    since: float | None = None,
    until: float | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[AuditEntry]:
    """Entries matching every filter, oldest first (the newest ``limit`` of them)."""
    require(request, "audit")
    with cloud_of(request).session() as session:
        entries = audit.list_entries(
            session,
            actor=actor,
            action=action,
            target=target,
            result=result,
            since=since,
            until=until,
            limit=limit,
        )
    return entries


@router.get("/verify")
def verify_audit(request: Request) -> AuditVerification:
    """Walk the hash chain; ``problems`` names each edited, deleted or reordered entry."""
    require(request, "audit")
    with cloud_of(request).session() as session:
        return AuditVerification.model_validate(asdict(audit.verify(session)))
