"""Behind nginx: forwarded certificates and addresses are believed from trusted proxies only."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote

from hybridai.link.proxied_tls import ProxiedTls

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _seen(client: str, headers: list[tuple[bytes, bytes]]) -> MutableMapping[str, Any]:
    seen: list[MutableMapping[str, Any]] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    scope: MutableMapping[str, Any] = {"type": "http", "client": (client, 5000), "headers": headers}
    asyncio.run(ProxiedTls(app, ["127.0.0.1"])(scope, None, None))
    return seen[0]


def _forwarded(verify: bytes = b"SUCCESS") -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ssl-client-cert", quote(PEM).encode()),
        (b"x-ssl-client-verify", verify),
        (b"x-forwarded-for", b"203.0.113.9, 10.1.2.3"),
    ]


def test_a_trusted_proxy_hands_over_the_verified_certificate_and_the_caller() -> None:
    scope = _seen("127.0.0.1", _forwarded())
    assert scope["extensions"]["tls"]["client_cert_chain"] == [PEM]
    assert scope["extensions"]["tls"]["client_cert_error"] is None
    assert scope["client"] == ("10.1.2.3", 0)  # the address nginx saw, not what a client wrote


def test_headers_from_anyone_else_are_ignored() -> None:
    scope = _seen("198.51.100.4", _forwarded())
    assert "extensions" not in scope
    assert scope["client"] == ("198.51.100.4", 5000)


def test_a_certificate_the_proxy_did_not_verify_is_not_adopted() -> None:
    for verify in (b"NONE", b"FAILED:certificate has expired", b""):
        scope = _seen("127.0.0.1", _forwarded(verify))
        assert "extensions" not in scope
