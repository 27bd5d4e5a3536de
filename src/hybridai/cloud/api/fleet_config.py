"""Fleet configuration routes: set, unset and read edge settings per fleet, site, tag, device.

A scope is ``fleet``, ``site:SITE``, ``tag:KEY=VALUE`` or ``device:DEVICE``. Changes are
audited (the middleware records each PATCH/DELETE with the scope and what it set) and reach
the affected devices with their next desired state (their long-poll wakes on the new ETag).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.devices import device_settings
from hybridai.cloud.operations import healing
from hybridai.protocol.edge_settings import EffectiveSettings, SettingsLevel

router = APIRouter(prefix="/api/v1", tags=["fleet"])


@router.get("/fleet-config")
def list_levels(request: Request) -> list[SettingsLevel]:
    """Every level that sets something: the fleet, then sites, tags and devices."""
    require(request, "read")
    with cloud_of(request).session() as session:
        return device_settings.list_levels(session)


@router.get("/fleet-config/effective")
def effective(request: Request, device: str | None = None) -> EffectiveSettings:
    """The merged settings of ``device`` (or of the fleet) and the level each came from."""
    require(request, "read")
    cloud = cloud_of(request)
    with cloud.session() as session:
        above = [] if device is None else healing.orders_for(session, device)[1]
        return device_settings.effective(
            session, device, device_settings.defaults(cloud.settings), above
        )


@router.patch("/fleet-config/{scope}")
def set_settings(
    scope: str, request: Request, body: Annotated[dict[str, Any], Body()]
) -> SettingsLevel:
    """Set settings at one level (422 naming each unknown or invalid key); others stay."""
    request.state.audit_target = f"scope={scope[:140]}"
    who = require(request, "operate")
    level, name = device_settings.parse_scope(scope)
    config = device_settings.validate(body)
    request.state.audit_target = f"scope={scope} set {device_settings.describe(config)}"
    with cloud_of(request).session() as session:
        return device_settings.set_level(session, level, name, config, who.name, time.time())


@router.delete("/fleet-config/{scope}", response_model=None)
def unset_settings(
    scope: str, request: Request, key: Annotated[list[str] | None, Query()] = None
) -> SettingsLevel | Response:
    """Unset ``key`` (repeatable) at one level, or every setting of it when none is named."""
    keys = list(key or [])
    request.state.audit_target = f"scope={scope[:140]} unset {', '.join(keys) or 'all'}"
    who = require(request, "operate")
    level, name = device_settings.parse_scope(scope)
    with cloud_of(request).session() as session:
        left = device_settings.unset_level(session, level, name, keys, who.name, time.time())
    return Response(status_code=204) if left is None else left
