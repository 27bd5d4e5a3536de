"""The ASGI TLS extension for uvicorn: hands the verified client certificate to the app.

uvicorn does not yet fill ``scope["extensions"]["tls"]`` (its pull request is open), so this
protocol does, following the ASGI spec's TLS extension: ``client_cert_chain`` (PEM strings,
leaf first), ``client_cert_name`` (RFC 4514 subject or None), ``client_cert_error`` (None when
absent or verified), ``server_cert``, ``tls_version`` and ``cipher_suite`` (IANA numbers).

The information is read once per connection, right after the handshake (asyncio calls
``connection_made`` only then), and copied into every request's scope on that connection.
Python before 3.13 exposes only the peer's own certificate, so the chain holds the leaf.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cryptography import x509
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _cipher_id(ssl_object: ssl.SSLObject) -> int | None:
    cipher = ssl_object.cipher()
    if cipher is None:
        return None
    for known in ssl_object.context.get_ciphers():
        if known["name"] == cipher[0]:
            return int(known["id"]) & 0xFFFF
    return None


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ASGI ``tls`` extension for one established connection.

    The server verifies client certificates at the handshake (CERT_OPTIONAL): a certificate
    that fails aborts the connection, so one that is present here is verified.
    """
    der = ssl_object.getpeercert(binary_form=True)
    chain = [_pem(der)] if der else []
    name = x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else None
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version or ""),
        "cipher_suite": _cipher_id(ssl_object),
    }


def with_tls(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    async def wrapped(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = dict(tls, client_cert_chain=list(tls["client_cert_chain"]))
            scope["extensions"] = extensions
        await app(scope, receive, send)

    return wrapped


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension (pass as ``Config(http=...)``)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            self.app = with_tls(self.app, tls_extension(ssl_object))
