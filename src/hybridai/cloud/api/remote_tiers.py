"""Remote tier routes: which models another v2 server (KServe, Triton) serves for the cloud."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import ValidationError

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.models import remote_tiers
from hybridai.cloud.remote_tier import RemoteTiers
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.names import InvalidName, check_name
from hybridai.protocol.remote import RemoteTier, RemoteTierInfo
from hybridai.serving.errors import validation_error

router = APIRouter(prefix="/api/v1", tags=["models"])
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RemoteTier.model_json_schema()}},
    }
}


def _tiers(request: Request) -> RemoteTiers:
    tiers: RemoteTiers = request.app.state.remote_tiers
    return tiers


def _name(name: str) -> str:
    try:
        return check_name("model name", name)
    except InvalidName as exc:
        raise ApiError(400, ErrorCode.INVALID_NAME, str(exc)) from None


def _with_state(request: Request, info: RemoteTierInfo) -> RemoteTierInfo:
    target = _tiers(request).target(info.name)
    if target is None or target.config != info.config:
        return info
    return info.model_copy(update={"state": target.state()})


@router.get("/remote-tiers")
def list_tiers(request: Request) -> list[RemoteTierInfo]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return [_with_state(request, i) for i in remote_tiers.list_remote_tiers(session)]


@router.get("/models/{name}/remote")
def show_tier(name: str, request: Request) -> RemoteTierInfo:
    require(request, "read")
    with cloud_of(request).session() as session:
        return _with_state(request, remote_tiers.get_remote_tier(session, _name(name)))


@router.put("/models/{name}/remote", openapi_extra=_BODY)
async def set_tier(
    name: str, request: Request, raw: Annotated[dict[str, Any], Body()]
) -> RemoteTierInfo:
    """Serve ``name`` from a remote v2 server (this replica at once, others within 5 s)."""
    who = require(request, "operate")  # before the body: a viewer learns nothing from a 400
    ctx, checked = cloud_of(request), _name(name)
    try:
        body = RemoteTier.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None

    def store() -> RemoteTierInfo:
        with ctx.session() as session:
            return remote_tiers.set_remote_tier(session, checked, body, who.name, time.time())

    info = await asyncio.to_thread(store)  # reads the secret and TLS files: off the loop
    _tiers(request).put(info)
    return _with_state(request, info)


@router.delete("/models/{name}/remote", status_code=204)
async def unset_tier(name: str, request: Request) -> Response:
    """Serve ``name`` from the cloud's own runtime again."""
    require(request, "operate")
    ctx, checked = cloud_of(request), _name(name)

    def remove() -> None:
        with ctx.session() as session:
            remote_tiers.unset_remote_tier(session, checked)

    await asyncio.to_thread(remove)
    _tiers(request).drop(checked)
    return Response(status_code=204)
