"""Behind a load balancer: the device certificate and caller address the proxy vouches for.

A TLS-terminating proxy (nginx in front of several cloud replicas) verifies the device's
certificate against the platform CA itself and opens its own connection to a replica, so the
replica's TLS handshake sees the proxy, not the device. The proxy forwards what it verified in
headers (nginx: ``X-SSL-Client-Cert: $ssl_client_escaped_cert``,
``X-SSL-Client-Verify: $ssl_client_verify``, ``X-Forwarded-For:
$proxy_add_x_forwarded_for``); this middleware puts them where a direct connection puts them
(the ASGI TLS extension, ``scope["client"]``), so authentication, audit and login throttling
work unchanged. Only connections from ``trusted`` addresses are believed; from anyone else the
headers are ignored, as a client could set them freely. The cloud still checks the certificate
against its own records (issued here, unexpired, unrevoked) on every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any
from urllib.parse import unquote

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]
CERT_HEADER = b"x-ssl-client-cert"
VERIFY_HEADER = b"x-ssl-client-verify"
FORWARDED_FOR = b"x-forwarded-for"
MAX_CERT_HEADER = 16 * 1024  # a device certificate is about 1 KB of PEM


class ProxiedTls:
    """ASGI middleware: a trusted proxy's forwarded client certificate and address."""

    def __init__(self, app: ASGIApp, trusted: Collection[str]) -> None:
        self.app = app
        self.trusted = frozenset(trusted)

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and client[0] in self.trusted:
            _adopt(scope)
        await self.app(scope, receive, send)


def _adopt(scope: MutableMapping[str, Any]) -> None:
    headers = dict(scope.get("headers") or [])
    extensions = dict(scope.get("extensions") or {})
    tls = dict(extensions.get("tls") or {})
    cert = headers.get(CERT_HEADER, b"")
    if (
        not tls.get("client_cert_chain")
        and cert
        and len(cert) <= MAX_CERT_HEADER
        and headers.get(VERIFY_HEADER) == b"SUCCESS"
    ):
        tls["client_cert_chain"] = [unquote(cert.decode("latin-1"))]
        tls["client_cert_error"] = None
        extensions["tls"] = tls
        scope["extensions"] = extensions
    forwarded = headers.get(FORWARDED_FOR, b"").decode("latin-1").split(",")[-1].strip()
    if forwarded:  # the rightmost entry: the address the proxy itself saw
        scope["client"] = (forwarded[:64], 0)
