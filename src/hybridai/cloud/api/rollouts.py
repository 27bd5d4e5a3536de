"""Rollout routes: start, list, read, pause, resume, abort; the driver does the work."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.models import rollout
from hybridai.protocol.rollout import Rollout, RolloutRequest

router = APIRouter(prefix="/api/v1", tags=["rollouts"])


@router.post("/rollouts", status_code=201)
def start_rollout(body: RolloutRequest, request: Request) -> Rollout:
    """Start a gradual rollout of ``body.version``; its canary gets the version at once."""
    who = require(request, "operate")
    with cloud_of(request).session() as session:
        return rollout.start(session, body, who.name, time.time())


@router.get("/rollouts")
def list_rollouts(request: Request, model: str | None = None) -> list[Rollout]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return rollout.list_rollouts(session, model)


@router.get("/rollouts/{rollout_id}")
def get_rollout(rollout_id: str, request: Request) -> Rollout:
    require(request, "read")
    with cloud_of(request).session() as session:
        return rollout.get(session, rollout_id)


def _control(request: Request, rollout_id: str, action: str) -> Rollout:
    who = require(request, "operate")
    with cloud_of(request).session() as session:
        return rollout.control(session, rollout_id, action, who.name, time.time())


@router.post("/rollouts/{rollout_id}/pause")
def pause_rollout(rollout_id: str, request: Request) -> Rollout:
    """Stop growing; the updated devices keep the new version and health still aborts."""
    return _control(request, rollout_id, "pause")


@router.post("/rollouts/{rollout_id}/resume")
def resume_rollout(rollout_id: str, request: Request) -> Rollout:
    """Continue; the current step's device timeouts and soak time restart now."""
    return _control(request, rollout_id, "resume")


@router.post("/rollouts/{rollout_id}/abort")
def abort_rollout(rollout_id: str, request: Request) -> Rollout:
    """Abort: every device goes back to the version it ran before."""
    return _control(request, rollout_id, "abort")


@router.post("/rollouts/{rollout_id}/advance")
def advance_rollout(rollout_id: str, request: Request) -> Rollout:
    """Take the next tick of every active rollout now, instead of waiting for the timer."""
    require(request, "operate")
    with cloud_of(request).session() as session:
        rollout.tick(session, time.time())
        return rollout.get(session, rollout_id)
