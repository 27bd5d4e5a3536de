"""The remote tier's client against real loopback servers: mutual TLS, auth, retries, refusals.

A small v2 server (FastAPI under uvicorn, TLS 1.3 requiring a client certificate from its CA)
scripts its answers; ``RemoteTarget`` is driven as the cloud drives it. The KServe end-to-end
test (``test_remote_tier.py``) covers the breaker through a real cloud process.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from pydantic import ValidationError

from _servers import serving_in_thread
from hybridai.cloud.models.remote_tiers import check_usable
from hybridai.cloud.remote_tier import RemoteTarget, RemoteTiers
from hybridai.demo.launcher import free_port
from hybridai.link import pki
from hybridai.link.tls import ServerTls, server_context
from hybridai.link.transport import server_config
from hybridai.protocol.errors import ApiError
from hybridai.protocol.remote import RemoteTier, RemoteTierInfo
from hybridai.protocol.v2 import InferenceRequest

REQUEST = InferenceRequest.model_validate(
    {
        "id": "r1",
        "parameters": {"latency_budget_ms": 50, "custom": "kept"},
        "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}],
    }
)
ANSWER = b'{"model_name":"big","id":"r1","outputs":[{"name":"y","shape":[1],"datatype":"FP32","data":[3.0]}]}'
API_KEY = "api-key-5e1d"


@dataclass
class Script:
    """What the server answers next (status, body), and what it saw."""

    answers: list[tuple[int, bytes]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)


def _app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/v2/health/ready")
    def ready() -> Response:
        return Response(b'{"ready":true}', media_type="application/json")

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request) -> Response:
        script.seen.append(
            {
                "path": request.url.path,
                "headers": dict(request.headers),
                "body": await request.body(),
            }
        )
        status, body = script.answers.pop(0) if script.answers else (200, ANSWER)
        return Response(body, status_code=status, media_type="application/json")

    return app


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    now = time.time()
    ca, ca_key = pki.create_ca(now, "remote tier test CA")
    server, server_key = pki.issue_server(ca, ca_key, ["127.0.0.1"], now)
    client_key = pki.new_key()
    client = pki.sign_device(
        ca, ca_key, pki.device_csr(client_key, "cloud-1"), "cloud-1", now, 3600
    )
    other, _ = pki.create_ca(now, "someone else's CA")
    files = {
        "ca.crt": pki.cert_pem(ca).encode(),
        "server.crt": pki.cert_pem(server).encode(),
        "server.key": pki.key_pem(server_key),
        "client.crt": pki.cert_pem(client).encode(),
        "client.key": pki.key_pem(client_key),
        "other.crt": pki.cert_pem(other).encode(),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return Pki(
        *(root / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")),
        other_ca=root / "other.crt",
    )


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def mtls_url(certs: Pki, script: Script) -> Iterator[str]:
    context = server_context(ServerTls(certs.server_cert, certs.server_key, certs.ca))
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no conversation
    port = free_port()
    with serving_in_thread(server_config(_app(script), "127.0.0.1", port, tls=context)):
        yield f"https://127.0.0.1:{port}"


@pytest.fixture
def plain_url(script: Script) -> Iterator[str]:
    port = free_port()
    with serving_in_thread(server_config(_app(script), "127.0.0.1", port)):
        yield f"http://127.0.0.1:{port}"


def _infer(config: RemoteTier, name: str = "big") -> Any:
    async def run() -> Any:
        target = RemoteTarget(name, config)
        try:
            return await target.infer(None, REQUEST), target
        except ApiError as exc:
            return exc, target
        finally:
            await target.close()

    return asyncio.run(run())


def test_mutual_tls_with_an_api_key_from_a_file(
    certs: Pki, mtls_url: str, script: Script, tmp_path: Path
) -> None:
    secret = tmp_path / "api.key"
    secret.write_text(API_KEY + "\n")
    config = RemoteTier(
        url=mtls_url,
        remote_model="big-v2",
        remote_version="7",
        auth="header",
        auth_header="X-Api-Key",
        secret=f"file:{secret}",
        ca_file=str(certs.ca),
        client_cert=str(certs.client_cert),
        client_key=str(certs.client_key),
    )
    check_usable(config)
    response, target = _infer(config, "big")
    assert not isinstance(response, ApiError), response.message
    assert response.model_name == "big"  # the cloud's name, whatever the remote calls it
    assert response.parameters["tier"] == "remote"
    assert response.outputs[0].data == [3.0]
    (seen,) = script.seen
    assert seen["path"] == "/v2/models/big-v2/versions/7/infer"
    assert seen["headers"]["x-api-key"] == API_KEY
    assert b"latency_budget_ms" not in seen["body"] and b'"custom":"kept"' in seen["body"]
    assert target.breaker.failures == 0


def test_tls_refusals_are_upstream_unavailable(certs: Pki, mtls_url: str, script: Script) -> None:
    base = {"url": mtls_url, "retries": 0, "timeout_s": 5}
    with_cert = {"client_cert": str(certs.client_cert), "client_key": str(certs.client_key)}
    # Someone else's CA: the server is not verified.
    refused, target = _infer(RemoteTier(**base, ca_file=str(certs.other_ca), **with_cert))
    assert (refused.status, refused.code) == (503, "upstream_unavailable")
    assert target.breaker.failures == 1
    # Our CA but no client certificate: the server hangs up.
    refused, _ = _infer(RemoteTier(**base, ca_file=str(certs.ca)))
    assert (refused.status, refused.code) == (503, "upstream_unavailable")
    # verify off (an operator's choice): served, with the client certificate.
    served, _ = _infer(RemoteTier(**base, verify=False, **with_cert))
    assert served.outputs[0].data == [3.0]
    assert len(script.seen) == 1


def test_503_is_retried_within_the_budget_other_errors_are_not(
    plain_url: str, script: Script
) -> None:
    script.answers = [(503, b'{"error":"loading"}'), (503, b'{"error":"loading"}')]
    served, target = _infer(RemoteTier(url=plain_url, retries=2))
    assert served.parameters["remote_retries"] == 2 and target.breaker.failures == 0

    script.answers = [(503, b'{"error":"loading"}')] * 2
    refused, target = _infer(RemoteTier(url=plain_url, retries=1))
    assert (refused.status, refused.code) == (503, "upstream_unavailable")
    assert target.breaker.failures == 1

    calls = len(script.seen)
    script.answers = [(500, b'{"error":"boom"}')]
    failed, target = _infer(RemoteTier(url=plain_url, retries=3))
    assert (failed.status, failed.code) == (502, "bad_upstream_response")
    assert "boom" in failed.message and len(script.seen) == calls + 1  # not retried
    assert target.breaker.failures == 1

    # The remote refusing the request is the caller's problem: not retried, no breaker count.
    script.answers = [(400, b'{"error":"shape [1, 2] of \'SECRET-7\' does not match 3.5e2"}')]
    refused, target = _infer(RemoteTier(url=plain_url))
    assert (refused.status, refused.code) == (400, "invalid_input")
    assert target.breaker.failures == 0
    # The remote's words pass, the values it quoted do not (they reach the audit log).
    assert "shape [#, #] of '…' does not match #" in refused.message, refused.message
    script.answers = [(404, b'{"error":"no such model"}')]
    missing, _ = _infer(RemoteTier(url=plain_url))
    assert (missing.status, missing.code) == (404, "model_not_found")


def test_an_open_breaker_refuses_without_calling(plain_url: str, script: Script) -> None:
    async def run() -> None:
        config = RemoteTier(url=plain_url, retries=0, breaker_failures=2, breaker_cooldown_s=60)
        target = RemoteTarget("big", config)
        script.answers = [(500, b"{}"), (500, b"{}")]
        with pytest.raises(ApiError):
            await target.infer(None, REQUEST)
        await target.check()  # ready, but that does not vouch for inference: still one failure
        assert target.breaker.failures == 1 and target.state().healthy is True
        with pytest.raises(ApiError):
            await target.infer(None, REQUEST)
        calls = len(script.seen)
        with pytest.raises(ApiError) as refused:
            await target.infer(None, REQUEST)
        assert refused.value.code == "circuit_open" and len(script.seen) == calls
        assert target.state().breaker == "open"
        await target.check()  # the health check passes: the breaker closes
        assert target.state().breaker == "closed" and target.state().healthy is True
        assert (await target.infer(None, REQUEST)).outputs[0].data == [3.0]
        await target.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"url": "http://h", "auth": "bearer", "secret": "hunter2"}, "reference"),
        ({"url": "http://h", "auth": "bearer"}, "needs a secret"),
        ({"url": "http://h", "secret": "env:X"}, "auth=none"),
        ({"url": "http://h", "auth": "header", "secret": "env:X"}, "auth_header"),
        ({"url": "http://user:pw@h"}, "credentials"),
        ({"url": "ftp://h"}, "http"),
        ({"url": "http://h", "ca_file": "/ca.pem"}, "https"),
        ({"url": "https://h", "client_cert": "/c.pem"}, "together"),
        ({"url": "http://h", "timeout_s": 0}, "greater than 0"),
        ({"url": "http://h", "remote_model": "../etc"}, "pattern"),
    ],
)
def test_configurations_that_cannot_work_are_refused(config: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        RemoteTier.model_validate(config)
    assert says in str(refused.value)


def test_a_secret_or_tls_file_the_cloud_lacks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ApiError) as missing:
        check_usable(RemoteTier(url="http://h", auth="bearer", secret="env:SURELY_NOT_SET_X"))
    assert missing.value.status == 400 and "SURELY_NOT_SET_X" in missing.value.message
    with pytest.raises(ApiError) as no_file:
        check_usable(RemoteTier(url="http://h", auth="bearer", secret=f"file:{tmp_path}/none"))
    assert "cannot be read" in no_file.value.message
    with pytest.raises(ApiError) as no_ca:
        check_usable(RemoteTier(url="https://h", ca_file=str(tmp_path / "ca.pem")))
    assert "ca_file" in no_ca.value.message


def test_reloads_follow_the_store_but_not_over_a_newer_change_of_this_process(
    plain_url: str,
) -> None:
    def info(name: str, **config: Any) -> RemoteTierInfo:
        tier = RemoteTier(url=plain_url, **config)
        return RemoteTierInfo(name=name, config=tier, updated_at=0.0, updated_by="test")

    async def run() -> None:
        tiers = RemoteTiers()
        before = time.monotonic()
        tiers.load([info("a"), info("b")], before)
        a, b = tiers.target("a"), tiers.target("b")
        assert a is not None and b is not None
        for target in (a, b):
            assert (await target.infer(None, REQUEST)).outputs[0].data == [3.0]
        client_a, client_b = a._client, b._client
        assert client_a is not None and client_b is not None

        tiers.load([info("a"), info("b", timeout_s=3)], time.monotonic())
        assert tiers.target("a") is a  # unchanged: same client, same breaker
        assert tiers.target("b") is not b and tiers.target("b").config.timeout_s == 3  # type: ignore[union-attr]
        assert not client_b.is_closed  # replaced: closed once its requests are over, not now

        stale = time.monotonic()  # a reload that read the store before this process's change
        tiers.put(info("c", retries=0))
        tiers.drop("a")
        tiers.load([info("a"), info("b", timeout_s=3)], stale)
        assert tiers.target("a") is None and tiers.target("c") is not None
        tiers.load([info("b", timeout_s=3)], time.monotonic())  # the store caught up
        assert tiers.target("c") is None and [t.name for t in tiers.targets()] == ["b"]
        await tiers.close()
        assert client_a.is_closed and client_b.is_closed

    asyncio.run(run())
