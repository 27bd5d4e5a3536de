"""The edge's admin routes: cloud-signed operator tokens, checked offline; the rest stays open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hybridai.edge.agent import EdgeAgent
from hybridai.edge.app import create_app
from hybridai.edge.settings import EdgeSettings
from hybridai.governance import access_tokens as at
from hybridai.protocol.edge_settings import DeviceSettings
from hybridai.protocol.fleet import DesiredState


@pytest.fixture
def keys(tmp_path: Path) -> at.TokenKeys:
    return at.load_or_create_keys(tmp_path / "cloud" / "token.key")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[EdgeAgent]:
    settings = EdgeSettings(
        data_dir=tmp_path / "edge", device_id="gw-1", cloud_url="https://127.0.0.1:9"
    )
    built = EdgeAgent(settings)
    yield built
    built.store.close()


@pytest.fixture
def edge(agent: EdgeAgent, keys: at.TokenKeys) -> TestClient:
    """The edge API without its loops (no lifespan): the key as a desired state brings it."""
    desired = DesiredState(
        device_id="gw-1",
        generation="g1",
        settings=DeviceSettings(token_public_key=keys.public_pem, sync_interval_s=7.0),
    )
    asyncio.run(agent.apply(desired))
    return TestClient(create_app(agent))


def _auth(keys: at.TokenKeys, role: str, scope: str = at.FULL, **kw: float) -> dict[str, str]:
    token, _ = at.issue(keys, "otto", role, kw.get("now", time.time()), kw.get("ttl", 600), scope)
    return {"Authorization": f"Bearer {token}"}


def test_operator_reads_config_without_secrets(edge: TestClient, keys: at.TokenKeys) -> None:
    response = edge.get("/api/v1/admin/config", headers=_auth(keys, "operator"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["device_id"] == "gw-1" and "token_public_key" not in body["desired_settings"]
    assert body["desired_settings"]["sync_interval_s"] == 7.0
    assert "BEGIN" not in response.text


def test_sync_now_needs_enrollment_first(edge: TestClient, keys: at.TokenKeys) -> None:
    response = edge.post("/api/v1/admin/sync", headers=_auth(keys, "admin"))
    assert response.status_code == 409 and "not enrolled" in response.json()["error"]


@pytest.mark.parametrize(
    ("role", "scope", "status", "code"),
    [
        ("viewer", at.FULL, 403, "forbidden"),
        ("data-scientist", at.FULL, 403, "forbidden"),
        ("operator", at.MFA_ENROLL, 403, "mfa_required"),
    ],
)
def test_other_roles_and_unenrolled_mfa_are_refused(
    edge: TestClient, keys: at.TokenKeys, role: str, scope: str, status: int, code: str
) -> None:
    for method, path in (("GET", "/api/v1/admin/config"), ("POST", "/api/v1/admin/sync")):
        response = edge.request(method, path, headers=_auth(keys, role, scope))
        assert (response.status_code, response.json()["code"]) == (status, code)


def test_forged_expired_and_missing_tokens_are_refused(
    edge: TestClient, keys: at.TokenKeys, tmp_path: Path
) -> None:
    forger = at.load_or_create_keys(tmp_path / "forger.key")
    cases = {
        "forged": _auth(forger, "admin"),
        "expired": _auth(keys, "admin", now=time.time() - 7200, ttl=60),
        "missing": {},
        "garbage": {"Authorization": "Bearer not.a.token"},
    }
    for case, headers in cases.items():
        response = edge.get("/api/v1/admin/config", headers=headers)
        assert response.status_code == 401, case


def test_before_the_cloud_key_arrives_admin_is_unavailable(
    agent: EdgeAgent, keys: at.TokenKeys
) -> None:
    edge = TestClient(create_app(agent))
    response = edge.get("/api/v1/admin/config", headers=_auth(keys, "admin"))
    assert response.status_code == 503 and "token key" in response.json()["error"]


def test_status_needs_a_site_key_even_on_loopback(edge: TestClient) -> None:
    answer = edge.get("/api/v1/status")
    assert answer.status_code == 401 and "hybridai site key create" in answer.json()["error"]
