"""The edge's LAN admission decision, offline: site keys by role, same-site device certificates."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from hybridai.edge.lan_auth import LanGuard, role_for
from hybridai.link import pki
from hybridai.protocol.errors import ApiError
from hybridai.protocol.site_access import SiteAccess, SiteKeyHash, site_key_sha256

NOW = time.time()
CA, CA_KEY = pki.create_ca(NOW)
INGEST_KEY, READ_KEY = "hai_site_a_ingest", "hai_site_b_read"


def _device(name: str) -> tuple[Any, str]:
    key = pki.new_key()
    cert = pki.sign_device(CA, CA_KEY, pki.device_csr(key, name), name, NOW, 3600)
    return cert, pki.cert_pem(cert)


GW, GW_PEM = _device("gw-1")
OTHER, OTHER_PEM = _device("other-site-1")
ACCESS = SiteAccess(
    site="plant-a",
    keys=[
        SiteKeyHash(key_id="a", sha256=site_key_sha256(INGEST_KEY), roles=["ingest"]),
        SiteKeyHash(key_id="b", sha256=site_key_sha256(READ_KEY), roles=["read"]),
    ],
    devices={"gw-1": [pki.public_key_sha256(GW)]},
)


def _scope(method: str, path: str, auth: str | None = None, pem: str | None = None) -> Any:
    headers = [(b"authorization", auth.encode())] if auth else []
    tls = {"client_cert_chain": [pem] if pem else [], "client_cert_error": None}
    return {"method": method, "path": path, "headers": headers, "extensions": {"tls": tls}}


def _refusal(guard: LanGuard, scope: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as refused:
        guard.admit(scope)
    return refused.value.status, refused.value.code


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("POST", "/api/v1/streams/telemetry/records", "ingest"),
        ("POST", "/v2/models/pm/infer", "infer"),
        ("GET", "/v2/models/pm", "read"),
        ("GET", "/v2/models/pm/stats", "read"),
        ("POST", "/v2/repository/index", "read"),
        ("GET", "/api/v1/status", "read"),
        ("GET", "/metrics", "read"),
        ("GET", "/v2/health/live", None),
        ("POST", "/api/v1/admin/sync", None),
    ],
)
def test_each_route_needs_its_role(method: str, path: str, role: str | None) -> None:
    assert role_for(method, path) == role


def test_a_key_is_admitted_for_its_roles_only_in_either_header_form() -> None:
    guard = LanGuard("keys", lambda: ACCESS)
    bearer = _scope("POST", "/api/v1/streams/t/records", f"Bearer {INGEST_KEY}")
    assert guard.admit(bearer) is not None
    basic = base64.b64encode(f"lan:{INGEST_KEY}".encode()).decode()
    assert guard.admit(_scope("POST", "/api/v1/streams/t/records", f"Basic {basic}")) is not None
    assert _refusal(guard, _scope("GET", "/api/v1/status", f"Bearer {INGEST_KEY}")) == (
        403,
        "forbidden",
    )
    assert _refusal(guard, _scope("GET", "/api/v1/status", "Bearer hai_site_x_guess")) == (
        401,
        "unauthenticated",
    )
    assert _refusal(guard, _scope("GET", "/api/v1/status")) == (401, "unauthenticated")


def test_without_the_sites_credentials_yet_the_edge_says_so() -> None:
    guard = LanGuard("keys", lambda: None)
    scope = _scope("GET", "/api/v1/status", f"Bearer {READ_KEY}")
    assert _refusal(guard, scope) == (503, "upstream_unavailable")


def test_a_certificate_admits_a_device_of_the_site_for_inference_only() -> None:
    guard = LanGuard("keys", lambda: ACCESS)
    caller = guard.admit(_scope("POST", "/v2/models/pm/infer", pem=GW_PEM))
    assert caller is not None and (caller.kind, caller.name) == ("peer", "gw-1")
    assert _refusal(guard, _scope("POST", "/api/v1/streams/t/records", pem=GW_PEM)) == (
        403,
        "forbidden",
    )
    assert _refusal(guard, _scope("POST", "/v2/models/pm/infer", pem=OTHER_PEM)) == (
        403,
        "peer_not_on_site",
    )


def test_the_same_device_name_on_another_key_is_not_the_peer() -> None:
    thief = pki.new_key()
    forged = pki.sign_device(CA, CA_KEY, pki.device_csr(thief, "gw-1"), "gw-1", NOW, 3600)
    guard = LanGuard("keys", lambda: ACCESS)
    scope = _scope("POST", "/v2/models/pm/infer", pem=pki.cert_pem(forged))
    assert _refusal(guard, scope) == (403, "peer_not_on_site")


def test_open_mode_admits_anyone_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    guard = LanGuard("open", lambda: None)
    caller = guard.admit(_scope("POST", "/api/v1/streams/t/records"))
    assert caller is not None and caller.kind == "open"
    assert "LAN API is OPEN" in caplog.text


def test_a_key_admitted_before_is_refused_once_the_site_revokes_it() -> None:
    access = [ACCESS]
    guard = LanGuard("keys", lambda: access[0])
    ingest = _scope("POST", "/api/v1/streams/t/records", f"Bearer {INGEST_KEY}")
    read = _scope("GET", "/api/v1/status", f"Bearer {INGEST_KEY}")

    first = guard.admit(ingest)
    again = guard.admit(ingest)  # from the cache of admitted credentials
    wrong_role = _refusal(guard, read)  # the same key for another role is checked afresh
    access[0] = ACCESS.model_copy(update={"keys": ACCESS.keys[1:]})  # a new desired state
    revoked = _refusal(guard, ingest)

    assert first == again and first is not None and first.name == "a"
    assert wrong_role == (403, "forbidden")
    assert revoked == (401, "unauthenticated")
