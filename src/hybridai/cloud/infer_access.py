"""Who may run the cloud's v2 inference, remembered between one client's requests.

Inference is open to any enrolled device and to people allowed to read
(``auth.require_user_or_device``). Checking a credential reads the store (its token or
certificate row, the user, revocations), and a busy client presents the same credential
thousands of times a second. So an admitted credential is remembered for ``TTL_S`` (never past
an access token's expiry) and forgotten at once when this process commits a change to any
credential table: a token or certificate revoked, a user disabled or logged out here is refused
on the next request; through another replica, within ``TTL_S``. Refusals are not remembered:
a refused credential is checked, and audited, every time. Role and MFA scope are checked on
every request from the remembered principal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Scope

from hybridai.cloud.auth import Principal, require_user_or_device
from hybridai.cloud.context import Cloud
from hybridai.storage.watch import TableWatch

__all__ = ["CREDENTIAL_TABLES", "TTL_S", "InferAccess"]

TTL_S = 1.0  # how long another replica's revocation may go unseen here
CREDENTIAL_TABLES = frozenset(
    {"api_tokens", "users", "revoked_access_tokens", "device_certificates", "devices"}
)
_MAX_KEPT = 10_000  # admitted credentials; beyond, the oldest are checked again
_Key = tuple[bytes | None, str | None]  # Authorization header, client certificate


def _credential(scope: Scope) -> _Key:
    authorization = None
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            authorization = value
            break
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    cert = chain[0] if chain and tls.get("client_cert_error") is None else None
    return authorization, cert


class InferAccess:
    """``admit(scope)``: the v2 infer hot path's access check (``serving.v2_fast``)."""

    def __init__(
        self, cloud: Cloud, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._watch = TableWatch(cloud.sessions, CREDENTIAL_TABLES)
        self._ttl_s, self._clock = ttl_s, clock
        self._kept: dict[_Key, tuple[float, int, Principal]] = {}  # -> (until, generation, who)

    async def admit(self, scope: Scope) -> None:
        """Refuse (401/403 ``ApiError``) a caller who may not infer; remember who may."""
        request = Request(scope)
        key = _credential(scope)
        now = self._clock()
        kept = self._kept.get(key)
        if kept is not None and kept[1] == self._watch.generation and kept[0] >= now:
            request.state.principal = kept[2]  # what the audit log and the role check read
            require_user_or_device(request, "read")  # no store read: the principal is known
            return
        generation = self._watch.generation
        who = await run_in_threadpool(require_user_or_device, request, "read")
        until = now + self._ttl_s
        expires_at = who.person.expires_at if who.person is not None else None
        if expires_at is not None:
            until = min(until, now + expires_at - time.time())
        if len(self._kept) >= _MAX_KEPT:
            self._kept.clear()
        self._kept[key] = (until, generation, who)
