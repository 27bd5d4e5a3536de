"""Site API keys and what a site's edges need to check callers offline.

A site operator issues keys to the site's LAN clients (PLCs, sensor bridges, apps), each with
roles (ingest, infer, read); the key is shown once and only its sha256 is kept. Every device
of the site receives the hashes, and the public keys of its site's devices, in its desired
state: an edge admits a LAN request or a peer call without asking the cloud, and a revocation
reaches the site with the next desired state.
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import DEVICE_ID_PATTERN
from hybridai.protocol.site_access import (
    SITE_KEY_PREFIX,
    SiteAccess,
    SiteKey,
    SiteKeyCreated,
    SiteKeyHash,
    SiteKeyRequest,
    site_key_sha256,
)
from hybridai.storage.tables import DeviceCertificateRow, DeviceRow, SiteKeyRow

_SITE = re.compile(DEVICE_ID_PATTERN)


def _checked_site(site: str) -> str:
    if not _SITE.match(site):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            "the site name is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return site


def _view(row: SiteKeyRow) -> SiteKey:
    return SiteKey.model_validate(
        {
            "key_id": row.key_id,
            "site": row.site,
            "name": row.name,
            "roles": row.roles,
            "created_at": row.created_at,
            "created_by": row.created_by,
            "revoked_at": row.revoked_at,
        }
    )


def create(
    session: Session, site: str, request: SiteKeyRequest, by: str, now: float
) -> SiteKeyCreated:
    """Mint a key for ``site``; the answer is the only place the key ever appears."""
    key_id = secrets.token_hex(6)
    key = f"{SITE_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = SiteKeyRow(
        key_id=key_id,
        site=_checked_site(site),
        name=request.name,
        roles=sorted(set(request.roles)),
        key_hash=site_key_sha256(key),
        created_at=now,
        created_by=by,
        revoked_at=None,
    )
    session.add(row)
    session.commit()
    return SiteKeyCreated(**_view(row).model_dump(), key=key)


def list_keys(session: Session, site: str) -> list[SiteKey]:
    rows = session.scalars(
        select(SiteKeyRow)
        .where(SiteKeyRow.site == _checked_site(site))
        .order_by(SiteKeyRow.created_at)
    )
    return [_view(row) for row in rows]


def revoke(session: Session, site: str, key_id: str, now: float) -> SiteKey:
    """Revoke a key; edges refuse it once their desired state carries the change."""
    row = session.get(SiteKeyRow, key_id)
    if row is None or row.site != site:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"site {site!r} has no key {key_id!r}: list its keys with "
            f"`hybridai site key list {site}`",
        )
    if row.revoked_at is None:
        row.revoked_at = now
        session.commit()
    return _view(row)


def access_for(session: Session, site: str, now: float) -> SiteAccess:
    """The site's unrevoked key hashes and its unrevoked devices' live public keys."""
    keys = [
        SiteKeyHash.model_validate(
            {"key_id": row.key_id, "sha256": row.key_hash, "roles": row.roles}
        )
        for row in session.scalars(
            select(SiteKeyRow)
            .where(SiteKeyRow.site == site, SiteKeyRow.revoked_at.is_(None))
            .order_by(SiteKeyRow.key_id)
        )
    ]
    devices: dict[str, set[str]] = {}
    rows = session.execute(
        select(DeviceCertificateRow.device_id, DeviceCertificateRow.public_key_sha256)
        .join(DeviceRow, DeviceRow.device_id == DeviceCertificateRow.device_id)
        .where(
            DeviceRow.site == site,
            DeviceRow.revoked.is_(False),
            DeviceCertificateRow.revoked_at.is_(None),
            DeviceCertificateRow.not_after > now,
        )
    )
    for device_id, key in rows:
        if key is not None:
            devices.setdefault(device_id, set()).add(key)
    return SiteAccess(
        site=site,
        keys=keys,
        devices={d: sorted(k) for d, k in sorted(devices.items())},
    )
