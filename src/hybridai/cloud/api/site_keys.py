"""Site key routes: an operator issues, lists and revokes the API keys of a site's LAN clients."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.devices import site_keys
from hybridai.protocol.site_access import SiteKey, SiteKeyCreated, SiteKeyRequest

router = APIRouter(prefix="/api/v1/sites", tags=["site keys"])


@router.post("/{site}/keys", status_code=201)
def create_site_key(site: str, body: SiteKeyRequest, request: Request) -> SiteKeyCreated:
    """A new key for the site's LAN clients; the answer is the only time the key is shown."""
    who = require(request, "operate")
    request.state.audit_target = f"site={site}"
    with cloud_of(request).session() as session:
        return site_keys.create(session, site, body, who.name, time.time())


@router.get("/{site}/keys")
def list_site_keys(site: str, request: Request) -> list[SiteKey]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return site_keys.list_keys(session, site)


@router.delete("/{site}/keys/{key_id}")
def revoke_site_key(site: str, key_id: str, request: Request) -> SiteKey:
    """Revoke a key: the site's edges refuse it from their next desired state on."""
    require(request, "operate")
    with cloud_of(request).session() as session:
        return site_keys.revoke(session, site, key_id, time.time())
