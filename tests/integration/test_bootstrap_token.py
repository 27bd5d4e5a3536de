"""The bootstrap admin token: flagged by the compliance report once an MFA admin exists, revoked
for good by `hybridai token revoke-bootstrap`, refused afterwards (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _totp import code_at
from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.settings import CloudSettings
from hybridai.governance import audit

PASSWORD = "correct horse battery staple"
REVOKE = "/api/v1/api-tokens/bootstrap/revoke"


@pytest.fixture
def settings(metadata_url: str, tmp_path: Path) -> CloudSettings:
    return CloudSettings(data_dir=tmp_path / "cloud", database_url=metadata_url)


@pytest.fixture
def cloud(settings: CloudSettings) -> Iterator[Cloud]:
    opened = open_cloud(settings)
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    with TestClient(create_app(cloud)) as client:
        yield client


@pytest.fixture
def cli_on(api: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """The CLI talking to the in-process app (httpx transport swapped, nothing else)."""

    @contextlib.contextmanager
    def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[TestClient]:
        api.headers.clear()  # the app stays up: the CLI's `with` must not close it
        if token:
            api.headers["Authorization"] = f"Bearer {token}"
        yield api

    monkeypatch.setattr(_api, "client", in_process)
    monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _mfa_admin(api: TestClient, bootstrap: dict[str, str], name: str) -> dict[str, str]:
    """An admin with MFA enrolled, logged in with full scope."""
    added = api.post(
        "/api/v1/users",
        json={"name": name, "role": "admin", "password": PASSWORD},
        headers=bootstrap,
    )
    assert added.status_code == 201, added.text
    first = api.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD}).json()
    enroll = _bearer(first["access_token"])
    secret = api.post(f"/api/v1/users/{name}/mfa", headers=enroll).json()["secret"]
    code = code_at(secret, time.time() - 30)
    confirmed = api.post(f"/api/v1/users/{name}/mfa/confirm", json={"code": code}, headers=enroll)
    assert confirmed.status_code == 200, confirmed.text
    login = {"username": name, "password": PASSWORD, "code": code_at(secret, time.time())}
    answer = api.post("/api/v1/auth/login", json=login)
    assert answer.status_code == 200, answer.text
    return _bearer(answer.json()["access_token"])


def _control(api: TestClient, who: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    report = api.get("/api/v1/compliance/report", headers=who).json()
    [found] = [c for c in report["controls"] if c["control"] == "bootstrap_token"]
    return report, found


def test_bootstrap_token_fails_the_report_until_revoked_then_is_refused(
    cloud: Cloud, api: TestClient, cli_on: CliRunner, settings: CloudSettings
) -> None:
    token = settings.admin_token_path.read_text().strip()
    bootstrap = _bearer(token)
    _, before = _control(api, bootstrap)
    assert before["status"] == "pass" and "still needed" in before["detail"]
    early = api.post(REVOKE, headers=bootstrap)
    assert early.status_code == 409 and early.json()["code"] == "conflict"
    assert "mfa-enroll" in early.json()["error"]

    alice = _mfa_admin(api, bootstrap, "alice")
    report, flagged = _control(api, alice)
    assert flagged["status"] == "fail" and not report["passed"]
    assert "alice" in flagged["detail"] and "hybridai token revoke-bootstrap" in flagged["detail"]
    shown = cli_on.invoke(cli, ["compliance", "report"], env={"HYBRIDAI_TOKEN": token})
    assert shown.exit_code == 1 and "revoke-bootstrap" in shown.output, shown.output

    viewer = api.post(
        "/api/v1/users",
        json={"name": "vera", "role": "viewer", "password": PASSWORD},
        headers=alice,
    )
    assert viewer.status_code == 201
    vera = api.post("/api/v1/auth/login", json={"username": "vera", "password": PASSWORD})
    refused = api.post(REVOKE, headers=_bearer(vera.json()["access_token"]))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"

    revoked = cli_on.invoke(cli, ["token", "revoke-bootstrap"], env={"HYBRIDAI_TOKEN": token})
    assert revoked.exit_code == 0 and "revoked the bootstrap" in revoked.output, revoked.output
    assert not settings.admin_token_path.exists()
    gone = api.get("/api/v1/users", headers=bootstrap)
    assert gone.status_code == 401 and gone.json()["code"] == "unauthenticated"
    report, passed = _control(api, alice)
    assert passed["status"] == "pass", passed
    assert report["passed"] == all(c["status"] != "fail" for c in report["controls"])
    again = api.post(REVOKE, headers=alice)
    assert again.status_code == 200 and again.json() == {"revoked": 0}
    with cloud.session() as session:
        entries = audit.list_entries(session, action=f"POST {REVOKE}")
    assert [(e.result, e.status) for e in entries] == [
        ("refused", 409),
        ("denied", 403),
        ("ok", 200),
        ("ok", 200),
    ]


def test_a_revoked_bootstrap_token_is_never_minted_again(
    cloud: Cloud, api: TestClient, settings: CloudSettings
) -> None:
    bootstrap = _bearer(settings.admin_token_path.read_text().strip())
    alice = _mfa_admin(api, bootstrap, "alice")
    assert api.post(REVOKE, headers=alice).json() == {"revoked": 1}
    reopened = open_cloud(settings)  # a restart: the token file is gone, none is written
    try:
        assert not settings.admin_token_path.exists()
    finally:
        reopened.close()
