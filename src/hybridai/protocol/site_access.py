"""Who may use a site's edges: site API keys for LAN clients, device keys for site peers.

The cloud is the only party that knows a whole site, so it sends each device, in its desired
state, the hashes of the site's API keys and the public keys of the site's devices. The edge
then decides every LAN request offline: a key's sha256 must be one of the site's, with the
role the route needs; a peer's certificate must carry the key the cloud recorded for that
device of the same site. Only hashes travel: a desired state leaks no usable secret.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field

SiteRole = Literal["ingest", "infer", "read"]
SITE_ROLES: tuple[SiteRole, ...] = ("ingest", "infer", "read")
SITE_KEY_PREFIX = "hai_site_"


def site_key_sha256(key: str) -> str:
    """The hash stored and sent in place of a site key (256-bit random: no salt, no stretch)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class SiteKeyRequest(BaseModel):
    """An operator's request for a new site key."""

    name: str = Field(min_length=1, max_length=200, description="Who holds it, e.g. line-3-plc")
    roles: list[SiteRole] = Field(min_length=1, max_length=3)


class SiteKey(BaseModel):
    """A site key as the cloud lists it (never the key itself)."""

    key_id: str
    site: str
    name: str
    roles: list[SiteRole]
    created_at: float
    created_by: str
    revoked_at: float | None = None


class SiteKeyCreated(SiteKey):
    """The answer to a creation: the only time the key itself is shown."""

    key: str


class SiteKeyHash(BaseModel):
    """What an edge holds of a site key: enough to check it, not to use it."""

    key_id: str
    sha256: str
    roles: list[SiteRole]


class SiteAccess(BaseModel):
    """The site's credentials, as its edges check them offline."""

    site: str
    keys: list[SiteKeyHash] = Field(default_factory=list)
    # device id -> sha256 of the SubjectPublicKeyInfo of its live certificates (usually one
    # key: a device keeps it across renewals). Peers pin these; edges admit only these.
    devices: dict[str, list[str]] = Field(default_factory=dict)
