"""The edge agent's admin routes, for operators: drain the backlog now, read the config.

They require an access token signed by the cloud for a role that may ``operate``, checked
offline with the cloud's token public key (sent in the desired state's settings), so they work
while the cloud is unreachable. Logout cannot reach an offline edge: a revoked token stays good
here until it expires (access tokens are short-lived for this reason). Ingest, status and v2
inference stay open on the agent's API, which listens on loopback by default.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from hybridai.edge.agent import EdgeAgent
from hybridai.governance import access_tokens, rbac
from hybridai.governance.access_tokens import Claims
from hybridai.protocol.errors import ApiError, ErrorCode

ACTION = "operate"


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            ErrorCode.UNAUTHENTICATED,
            "send 'Authorization: Bearer TOKEN' with an access token from `hybridai login`",
        )
    return token.strip()


def authorize(agent: EdgeAgent, request: Request) -> Claims:
    """The verified claims of an operator's (or admin's) access token, or an ``ApiError``."""
    token = _bearer(request)
    pem = agent.token_public_key
    if pem is None:
        raise ApiError(
            503,
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "this edge has not yet received the cloud's token key (it comes with the desired "
            "state): wait until the agent has reached the cloud once",
        )
    try:
        claims = access_tokens.verify(access_tokens.load_public_key(pem), token, time.time())
    except (access_tokens.InvalidAccessToken, ValueError) as exc:
        raise ApiError(401, ErrorCode.UNAUTHENTICATED, str(exc)) from None
    if claims.scope != access_tokens.FULL:
        raise ApiError(403, ErrorCode.MFA_REQUIRED, f"user '{claims.sub}' must enroll MFA first")
    if not rbac.may(claims.role, ACTION):
        raise ApiError(
            403,
            ErrorCode.FORBIDDEN,
            f"user '{claims.sub}' (role {claims.role}) may not {ACTION} this edge; roles "
            f"allowed: {', '.join(sorted(rbac.ROLES_THAT_MAY[ACTION]))}",
        )
    return claims


def admin_router(agent: EdgeAgent) -> APIRouter:
    router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

    @router.post("/sync")
    async def sync_now(request: Request) -> dict[str, Any]:
        """Drain the backlog to the cloud now instead of at the next sync interval."""
        claims = authorize(agent, request)
        if agent.uploader is None:
            raise ApiError(409, ErrorCode.CONFLICT, "this edge is not enrolled yet")
        try:
            sent = await agent.uploader.drain()
        except Exception as exc:  # the cloud down, or refusing: say so, keep the backlog
            raise ApiError(
                503, ErrorCode.UPSTREAM_UNAVAILABLE, f"sync failed, backlog kept: {exc}"
            ) from None
        return {"batches_sent": sent, "by": claims.sub}

    @router.get("/config")
    async def config(request: Request) -> dict[str, Any]:
        """The agent's settings (secrets masked) and what the cloud's desired state set."""
        authorize(agent, request)
        current = agent.desired.current
        desired = (
            {}
            if current is None
            else current.settings.model_dump(mode="json", exclude={"token_public_key"})
        )
        return {
            "device_id": agent.device_id,
            "site": agent.site,
            "settings": agent.settings.model_dump(mode="json"),
            "desired_settings": desired,
        }

    return router
