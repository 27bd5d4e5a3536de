"""The ASGI TLS extension our uvicorn protocol adds, seen by an app behind a real server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from _servers import serving_in_thread
from hybridai.link import pki
from hybridai.link.tls import ServerTls, client_context
from hybridai.link.transport import server_config

TLS13_SUITES = {0x1301, 0x1302, 0x1303}


async def echo_tls(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[Any], Awaitable[None]],
) -> None:
    """Answers with what the server put in ``scope["extensions"]["tls"]``."""
    if scope["type"] == "lifespan":
        message = await receive()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = json.dumps((scope.get("extensions") or {}).get("tls")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("asgi-tls")
    paths, _ = pki.init_cloud_pki(root, [], time.time())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tls = ServerTls(paths.server_cert, paths.server_key, paths.ca_cert)
    with serving_in_thread(server_config(echo_tls, "127.0.0.1", port, tls=tls)):
        yield f"https://127.0.0.1:{port}", root


def test_without_a_client_certificate_the_chain_is_empty(server: tuple[str, Path]) -> None:
    url, root = server
    tls = httpx.get(url, verify=client_context(root / "ca.crt")).json()
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304 and tls["cipher_suite"] in TLS13_SUITES


def test_a_verified_client_certificate_reaches_the_app(server: tuple[str, Path]) -> None:
    url, root = server
    ca, ca_key = pki.CloudPki(root).load_ca()
    key = pki.new_key()
    cert = pki.sign_device(ca, ca_key, pki.device_csr(key, "gw-1"), "gw-1", time.time(), 600)
    pki.write_private(root / "gw.key", pki.key_pem(key))
    pki.write_public(root / "gw.crt", pki.cert_pem(cert).encode())
    context = client_context(root / "ca.crt", root / "gw.crt", root / "gw.key")

    with httpx.Client(verify=context) as http:
        first, second = http.get(url).json(), http.get(url).json()  # one connection, two requests

    assert first == second
    assert first["client_cert_name"] == "CN=gw-1"
    assert [pki.serial_hex(pki.load_cert(p)) for p in first["client_cert_chain"]] == [
        pki.serial_hex(cert)
    ]
    assert first["client_cert_error"] is None and first["tls_version"] == 0x0304


def test_a_plain_http_server_adds_no_tls_extension(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with serving_in_thread(server_config(echo_tls, "127.0.0.1", port)):
        assert httpx.get(f"http://127.0.0.1:{port}").json() is None
