"""Who may use this edge's LAN API, decided offline: site keys, same-site peers, or open.

Anyone on a site's network can reach an edge, so every route that takes data in, answers
inferences (and through this edge's identity, the cloud's) or shows state asks for a
credential the site's operator issued:

- a site key (``hybridai site key create SITE --role ingest|infer|read``) sent as
  ``Authorization: Bearer KEY`` or as the password of HTTP basic auth; its sha256 must be one
  the cloud sent in the desired state, with the role the route needs;
- on the peer listener, a device certificate of this edge's own site (the handshake checks the
  platform CA; here, that the device and its public key are the ones the cloud recorded for
  the site): site peers may run inferences, nothing else.

The cloud's answer is cached with the desired state, so the check works offline. Health
probes and the API description stay open; the admin routes check operators' access tokens
themselves (edge/admin.py). ``HYBRIDAI_EDGE_LAN_AUTH=open`` admits anyone, for lab benches.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from hybridai.link import pki
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.site_access import SiteAccess, SiteRole, site_key_sha256
from hybridai.serving.errors import error_response

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json"})
READ_POSTS = frozenset({"/v2/repository/index"})  # reads that the v2 extensions make POSTs
ADMIN_PREFIX = "/api/v1/admin/"  # operators' access tokens, checked by edge/admin.py
PEER_ROLES: frozenset[SiteRole] = frozenset({"infer"})
ADMITTED_CACHE = 256  # distinct admitted credentials kept; more start the cache over
_HOW = "create one with `hybridai site key create SITE --role {role}`"


def role_for(method: str, path: str) -> SiteRole | None:
    """The role a route needs (None: open, or guarded by its own check)."""
    if path in OPEN_PATHS or path.startswith(ADMIN_PREFIX):
        return None
    if path.startswith("/api/v1/streams/"):
        return "ingest"
    if path.startswith("/v2/") and method == "POST" and path not in READ_POSTS:
        return "infer"
    return "read"


@dataclass(frozen=True)
class LanCaller:
    """Who a LAN request came from: ``key`` (a site key's id), ``peer`` (a device) or ``open``."""

    kind: str
    name: str


def _presented_key(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, credential = value.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        return credential
    if scheme.lower() == "basic" and credential:
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _peer_certificate(scope: Scope) -> str | None:
    """The verified client certificate's PEM (the handshake checked it against the CA)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain or tls.get("client_cert_error") is not None:
        return None
    return str(chain[0])


@functools.lru_cache(maxsize=256)
def _identity(pem: str) -> tuple[str | None, str]:
    """``(device id or None, key sha256)`` of a certificate; peers reuse theirs for hours."""
    cert = pki.load_cert(pem)
    try:
        device_id: str | None = pki.device_id_of(cert)
    except pki.PkiError:
        device_id = None
    return device_id, pki.public_key_sha256(cert)


class LanGuard:
    """The decision, from the request's credentials and the site's access as last received."""

    def __init__(self, mode: str, access: Callable[[], SiteAccess | None]) -> None:
        self.mode = mode
        self.access = access
        # Admitted site keys by (Authorization header, role): hashing and comparing a key on
        # every request of a busy client costs more than the rest of the check.
        self._admitted: dict[tuple[bytes, SiteRole], LanCaller] = {}
        self._admitted_by: SiteAccess | None = None
        if mode == "open":
            log.warning(
                "LAN API is OPEN (HYBRIDAI_EDGE_LAN_AUTH=open): anyone who reaches this edge "
                "may ingest, run inferences and read its status; use it on lab benches only"
            )

    def admit(self, scope: Scope) -> LanCaller | None:
        """The caller, None for routes that need no site credential; raises ``ApiError``."""
        role = role_for(scope["method"], scope["path"])
        if role is None:
            return None
        if self.mode == "open":
            return LanCaller("open", "anyone")
        headers = dict(scope.get("headers") or [])
        presented = headers.get(b"authorization")
        if presented is not None:  # a credential admitted before, against the same access
            access = self.access()
            if access is not None and access is self._admitted_by:
                known = self._admitted.get((presented, role))
                if known is not None:
                    return known
        key = _presented_key(headers)
        cert = _peer_certificate(scope) if key is None else None
        if key is None and cert is None:
            raise ApiError(
                401,
                ErrorCode.UNAUTHENTICATED,
                f"this edge needs a site key for {role}: send 'Authorization: Bearer KEY' "
                f"({_HOW.format(role=role)}); site peers use their device certificate",
            )
        access = self.access()
        if access is None:
            raise ApiError(
                503,
                ErrorCode.UPSTREAM_UNAVAILABLE,
                "this edge has not yet received its site's credentials (they come with the "
                "desired state): wait until it has reached the cloud once",
            )
        if key is not None:
            caller = self._by_key(access, key, role)
            self._remember(access, headers[b"authorization"], role, caller)
            return caller
        assert cert is not None
        return self._by_certificate(access, cert, role)

    def _remember(
        self, access: SiteAccess, presented: bytes, role: SiteRole, caller: LanCaller
    ) -> None:
        """Keep an admitted credential's answer while the site's access stays the same object.

        A new desired state brings a new ``SiteAccess`` (keys revoked or added): the cache
        starts over, so a revoked key is refused from the next request on.
        """
        if access is not self._admitted_by or len(self._admitted) >= ADMITTED_CACHE:
            self._admitted = {}
            self._admitted_by = access
        self._admitted[(presented, role)] = caller

    def _by_key(self, access: SiteAccess, key: str, role: SiteRole) -> LanCaller:
        digest = site_key_sha256(key)
        found = None
        for candidate in access.keys:  # compare all: the timing says nothing about which
            if hmac.compare_digest(candidate.sha256, digest):
                found = candidate
        if found is None:
            raise ApiError(
                401,
                ErrorCode.UNAUTHENTICATED,
                f"unknown or revoked site key for site {access.site}: check the key, or "
                f"{_HOW.format(role=role)}",
            )
        if role not in found.roles:
            raise ApiError(
                403,
                ErrorCode.FORBIDDEN,
                f"site key {found.key_id} (roles {', '.join(found.roles)}) may not {role}: "
                f"{_HOW.format(role=role)}",
            )
        return LanCaller("key", found.key_id)

    def _by_certificate(self, access: SiteAccess, pem: str, role: SiteRole) -> LanCaller:
        device_id, key = _identity(pem)
        known = access.devices.get(device_id or "", [])
        if device_id is None or key not in known:
            raise ApiError(
                403,
                ErrorCode.PEER_NOT_ON_SITE,
                f"the certificate is not that of a device of site {access.site} as the cloud "
                "records it (device and key): only the site's own devices are its peers",
            )
        if role not in PEER_ROLES:
            raise ApiError(
                403,
                ErrorCode.FORBIDDEN,
                f"site peer {device_id} may only run inferences here, not {role}",
            )
        return LanCaller("peer", device_id)


class LanAuthMiddleware:
    """Answers 401/403 before a route (or the body limit) sees the request."""

    def __init__(self, app: ASGIApp, guard: LanGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            caller = self.guard.admit(scope)
        except ApiError as exc:
            client = scope.get("client")
            log.log(  # 503: not refused, only early (the site's credentials are on their way)
                logging.INFO if exc.status == 503 else logging.WARNING,
                "LAN request refused (%s): %s %s from %s",
                exc.code,
                scope["method"],
                scope["path"],
                client[0] if client else "unknown",
            )
            headers = {"WWW-Authenticate": 'Bearer realm="hybridai site"'}
            response = error_response(
                exc.status, exc.code, exc.message, headers=headers if exc.status == 401 else None
            )
            await response(scope, receive, send)
            return
        if caller is not None:
            scope.setdefault("state", {})["lan_caller"] = caller
        await self.app(scope, receive, send)
