"""People, RBAC and the audit log through the cloud API, on SQLite and PostgreSQL.

Each attack the issue lists for people is tried here and must be refused with a clear error,
leave an audit entry, and leave nothing else behind.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update
from typer.testing import CliRunner

from _totp import code_at
from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.settings import CloudSettings
from hybridai.governance import access_tokens, audit
from hybridai.protocol.people import AuditEntry
from hybridai.storage.tables import AuditEntryRow, UserRow

PASSWORD = "correct horse battery staple"
SQLISH = ["' OR '1'='1", "x'; DROP TABLE users; --", '" OR ""="', "%", "_", "\\'; --", "a\x00b"]


@pytest.fixture
def cloud(metadata_url: str, tmp_path: Path) -> Iterator[Cloud]:
    opened = open_cloud(CloudSettings(data_dir=tmp_path / "cloud", database_url=metadata_url))
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    with TestClient(create_app(cloud)) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(cloud: Cloud) -> dict[str, str]:
    return _bearer(cloud.settings.admin_token_path.read_text().strip())


def _add(api: TestClient, admin: dict[str, str], name: str, role: str) -> None:
    response = api.post(
        "/api/v1/users", json={"name": name, "role": role, "password": PASSWORD}, headers=admin
    )
    assert response.status_code == 201, response.text


def _login(api: TestClient, name: str, code: str | None = None) -> Any:
    return api.post(
        "/api/v1/auth/login", json={"username": name, "password": PASSWORD, "code": code}
    )


def _enrolled(api: TestClient, admin: dict[str, str], name: str, role: str) -> tuple[str, str]:
    """A user with MFA enrolled; returns (secret, full-scope access token)."""
    _add(api, admin, name, role)
    first = _login(api, name).json()
    assert first["scope"] == "mfa-enroll"
    secret = api.post(f"/api/v1/users/{name}/mfa", headers=_bearer(first["access_token"]))
    secret = secret.json()["secret"]
    confirm = api.post(
        f"/api/v1/users/{name}/mfa/confirm",
        json={"code": code_at(secret, time.time() - 30)},
        headers=_bearer(first["access_token"]),
    )
    assert confirm.status_code == 200, confirm.text
    answer = _login(api, name, code_at(secret, time.time()))
    assert answer.status_code == 200, answer.text
    return secret, answer.json()["access_token"]


def _entries(cloud: Cloud, **filters: Any) -> list[AuditEntry]:
    with cloud.session() as session:
        return audit.list_entries(session, **filters)


def _user_count(cloud: Cloud) -> int:
    with cloud.session() as session:
        return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)


# --- login, MFA, tokens -------------------------------------------------------------------


def test_viewer_logs_in_without_mfa_and_reads_but_may_not_operate(
    api: TestClient, admin: dict[str, str]
) -> None:
    _add(api, admin, "vera", "viewer")
    answer = _login(api, "vera").json()
    assert (answer["scope"], answer["role"]) == ("full", "viewer")
    assert answer["expires_at"] - time.time() <= 900 + 1
    vera = _bearer(answer["access_token"])
    assert api.get("/api/v1/models", headers=vera).status_code == 200
    who = api.get("/api/v1/auth/whoami", headers=vera).json()
    assert (who["name"], who["kind"], who["role"]) == ("vera", "user", "viewer")
    refused = api.put("/api/v1/deployments/pm", json={"name": "pm", "version": "1"}, headers=vera)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


def test_admin_without_mfa_may_only_enroll_it(
    api: TestClient, admin: dict[str, str], cloud: Cloud
) -> None:
    _add(api, admin, "alice", "admin")
    answer = _login(api, "alice").json()
    assert answer["scope"] == "mfa-enroll" and "mfa-enroll alice" in answer["message"]
    alice = _bearer(answer["access_token"])
    before = _user_count(cloud)
    attempt = api.post(
        "/api/v1/users", json={"name": "eve", "role": "admin", "password": PASSWORD}, headers=alice
    )
    assert attempt.status_code == 403 and attempt.json()["code"] == "mfa_required"
    assert api.get("/api/v1/audit", headers=alice).status_code == 403
    assert _user_count(cloud) == before  # no trace but the audit entry
    [entry] = _entries(cloud, actor="alice", action="POST /api/v1/users")
    assert (entry.role, entry.result, entry.status) == ("admin", "denied", 403)
    assert "mfa_required" in entry.detail


def test_mfa_login_and_replayed_code_is_refused(api: TestClient, admin: dict[str, str]) -> None:
    secret, token = _enrolled(api, admin, "otto", "operator")
    assert api.get("/api/v1/audit", headers=_bearer(token)).status_code == 200
    no_code = _login(api, "otto")
    assert no_code.status_code == 401 and no_code.json()["code"] == "mfa_required"
    replay = _login(api, "otto", code_at(secret, time.time()))  # the code just used
    assert replay.status_code == 401 and "already used" in replay.json()["error"]
    wrong = _login(api, "otto", "000000")
    assert wrong.status_code == 401


def test_logout_revokes_the_token_and_a_replay_is_refused(
    api: TestClient, admin: dict[str, str], cloud: Cloud
) -> None:
    _add(api, admin, "dana", "data-scientist")
    dana = _bearer(_login(api, "dana").json()["access_token"])
    assert api.post("/api/v1/auth/logout", headers=dana).status_code == 204
    replayed = api.get("/api/v1/models", headers=dana)
    assert replayed.status_code == 401 and "revoked" in replayed.json()["error"]
    assert _entries(cloud, action="GET /api/v1/models", result="denied")


def test_forged_and_expired_tokens_are_refused(
    api: TestClient, cloud: Cloud, admin: dict[str, str], tmp_path: Path
) -> None:
    _add(api, admin, "vera", "viewer")
    forger = access_tokens.load_or_create_keys(tmp_path / "forger.key")
    forged, _ = access_tokens.issue(forger, "vera", "admin", time.time())
    response = api.get("/api/v1/users", headers=_bearer(forged))
    assert response.status_code == 401 and "signature" in response.json()["error"]
    keys = access_tokens.load_or_create_keys(cloud.settings.data_dir / "token.key")
    expired, _ = access_tokens.issue(keys, "vera", "viewer", time.time() - 3600, ttl_s=60)
    response = api.get("/api/v1/models", headers=_bearer(expired))
    assert response.status_code == 401 and "expired" in response.json()["error"]
    ghost, _ = access_tokens.issue(keys, "nobody", "admin", time.time())
    assert api.get("/api/v1/users", headers=_bearer(ghost)).status_code == 401
    assert len(_entries(cloud, result="denied")) == 3


def test_disabling_a_user_stops_their_live_token(api: TestClient, admin: dict[str, str]) -> None:
    _add(api, admin, "vera", "viewer")
    vera = _bearer(_login(api, "vera").json()["access_token"])
    assert api.post("/api/v1/users/vera/disable", headers=admin).status_code == 200
    assert api.get("/api/v1/models", headers=vera).status_code == 401
    assert _login(api, "vera").status_code == 403
    users = {u["name"]: u for u in api.get("/api/v1/users", headers=admin).json()}
    assert users["vera"]["disabled"]


def test_password_guessing_hits_the_throttle(
    api: TestClient, admin: dict[str, str], cloud: Cloud
) -> None:
    _add(api, admin, "vera", "viewer")
    statuses = [
        api.post("/api/v1/auth/login", json={"username": "vera", "password": f"guess-{i}"})
        for i in range(7)
    ]
    assert [r.status_code for r in statuses[:5]] == [401] * 5
    throttled = statuses[5]
    assert throttled.status_code == 429 and throttled.json()["code"] == "too_many_attempts"
    assert (
        int(throttled.headers["Retry-After"]) >= 1 and "try again in" in throttled.json()["error"]
    )
    assert _login(api, "vera").status_code == 429  # even the right password waits
    assert len(_entries(cloud, actor="vera", action="POST /api/v1/auth/login")) == 8


def test_api_tokens_create_list_revoke(api: TestClient, admin: dict[str, str]) -> None:
    created = api.post("/api/v1/api-tokens", json={"name": "ci", "role": "viewer"}, headers=admin)
    assert created.status_code == 201, created.text
    ci = created.json()
    assert ci["token"].startswith("hai_api_")
    assert api.get("/api/v1/models", headers=_bearer(ci["token"])).status_code == 200
    listed = api.get("/api/v1/api-tokens", headers=admin).json()
    assert {t["token_id"] for t in listed} >= {ci["token_id"]}
    assert all("token" not in t for t in listed)
    revoked = api.delete(f"/api/v1/api-tokens/{ci['token_id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    assert api.get("/api/v1/models", headers=_bearer(ci["token"])).status_code == 401
    bad = api.post("/api/v1/api-tokens", json={"name": "x", "role": "root"}, headers=admin)
    assert bad.status_code == 400


# --- RBAC on every route --------------------------------------------------------------------

OPEN = {("POST", "/api/v1/enroll"), ("POST", "/api/v1/auth/login")}
VIEWER_MAY_WRITE = {
    ("POST", "/api/v1/lake/query"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/users/{name}/mfa"),
    ("POST", "/api/v1/users/{name}/mfa/confirm"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
    ("POST", "/v2/repository/index"),  # a read, POST as the v2 extension has it
}


# Valid bodies, so the role check (not schema validation) decides; a new mutating route with
# a body needs an example here (the test says which).
EXAMPLES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/enrollment-tokens"): {"site": "plant-a", "device_id": "gw-1", "ttl_s": 60},
    ("PUT", "/api/v1/deployments/{name}"): {"name": "vera", "version": "1"},
    ("POST", "/api/v1/training-runs"): {
        "model_name": "pm", "query": "SELECT 1", "features": ["x"], "label": "y"
    },
    ("PUT", "/api/v1/policies/{stream}"): {},
    ("POST", "/api/v1/devices/{device_id}/status"): {
        "device_id": "gw-1", "agent_version": "1", "uptime_s": 1.0
    },
    ("POST", "/api/v1/devices/{device_id}/certificate"): {"csr": "x"},
    ("POST", "/api/v1/users"): {"name": "eve", "role": "admin", "password": PASSWORD},
    ("POST", "/api/v1/api-tokens"): {"name": "eve", "role": "admin"},
    ("POST", "/api/v1/lake/maintenance"): {"stream": "telemetry", "action": "optimize"},
    ("POST", "/api/v1/rollouts"): {"model": "vera", "version": "1"},
    ("POST", "/api/v1/models/{name}/versions/{version}/stage"): {"stage": "archived"},
    ("PUT", "/api/v1/streams/{stream}/schema"): {"fields": {"x": "number"}},
    ("PATCH", "/api/v1/devices/{device_id}/tags"): {"add": {"line": "3"}},
    ("PUT", "/api/v1/lake/grants/{stream}"): {"kind": "role", "name": "viewer"},
    ("POST", "/api/v1/sites/{site}/keys"): {"name": "bench", "roles": ["ingest"]},
}  # fmt: skip


def _routes(api: TestClient) -> list[tuple[str, str]]:
    paths = api.app.openapi()["paths"]  # type: ignore[attr-defined]
    return [(m.upper(), p) for p, ops in paths.items() for m in ops]


def _concrete(path: str) -> str:
    return (
        path.replace("{name}", "vera")
        .replace("{version}", "1")
        .replace("{variant}", "edge")
        .replace("{batch_seq}", "1")
        .replace("{device_id}", "gw-1")
        .replace("{stream}", "telemetry")
        .replace("{site}", "plant-a")
        .replace("{run_id}", "r1")
        .replace("{token_id}", "0123456789abcdef")
    )


def test_every_route_but_the_open_ones_requires_identity(api: TestClient) -> None:
    checked = 0
    for method, path in _routes(api):
        if (method, path) in OPEN or path.startswith("/v2/health/"):
            continue
        response = api.request(method, _concrete(path), json={})
        assert response.status_code == 401, (method, path, response.status_code)
        checked += 1
    assert checked >= 30


def test_a_viewer_may_change_nothing(api: TestClient, admin: dict[str, str]) -> None:
    _add(api, admin, "vera", "viewer")
    vera = _bearer(_login(api, "vera").json()["access_token"])
    for method, path in _routes(api):
        if method == "GET" or (method, path) in OPEN | VIEWER_MAY_WRITE:
            continue
        body = EXAMPLES.get((method, path), {})
        response = api.request(method, _concrete(path), json=body, headers=vera)
        assert response.status_code == 403, (method, path, response.text)


def test_only_admins_and_operators_read_the_audit_log(
    api: TestClient, admin: dict[str, str]
) -> None:
    _add(api, admin, "dana", "data-scientist")
    dana = _bearer(_login(api, "dana").json()["access_token"])
    assert api.get("/api/v1/audit", headers=dana).status_code == 403
    assert api.get("/api/v1/audit/verify", headers=dana).status_code == 403
    assert api.get("/api/v1/audit", headers=admin).status_code == 200


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("evil", SQLISH)
def test_sql_looking_strings_are_harmless(
    api: TestClient, admin: dict[str, str], cloud: Cloud, evil: str
) -> None:
    _add(api, admin, "vera", "viewer")
    login = api.post("/api/v1/auth/login", json={"username": evil, "password": evil, "code": evil})
    assert login.status_code in (400, 401)
    login = api.post("/api/v1/auth/login", json={"username": "vera", "password": evil})
    assert login.status_code == 401
    added = api.post(
        "/api/v1/users", json={"name": evil, "role": "viewer", "password": PASSWORD}, headers=admin
    )
    assert added.status_code == 400
    added = api.post(
        "/api/v1/users", json={"name": "vic", "role": evil, "password": PASSWORD}, headers=admin
    )
    assert added.status_code == 400
    token = api.post("/api/v1/api-tokens", json={"name": evil, "role": "viewer"}, headers=admin)
    assert token.status_code == 400
    disabled = api.post(f"/api/v1/users/{quote(evil, safe='')}/disable", headers=admin)
    assert disabled.status_code in (404, 400)
    for field in ("actor", "action", "target", "result"):  # literal matches only, no wildcards
        found = api.get("/api/v1/audit", params={field: evil}, headers=admin)
        assert found.status_code in (200, 400), found.text  # 400: longer than a result
        shown = audit.clean(evil)
        assert all(shown in e[field] for e in found.json() if found.status_code == 200)
    attempts = _entries(cloud, action="POST /api/v1/auth/login")  # plain text, NUL escaped
    assert [a.result for a in attempts] in (["denied", "denied"], ["refused", "denied"])
    # A password that looks like SQL is just a password.
    stored = api.post(
        "/api/v1/users",
        json={"name": "sql-fan", "role": "viewer", "password": evil + " but long enough"},
        headers=admin,
    )
    assert stored.status_code == 201
    ok = api.post(
        "/api/v1/auth/login", json={"username": "sql-fan", "password": evil + " but long enough"}
    )
    assert ok.status_code == 200
    assert _user_count(cloud) == 2
    assert api.get("/api/v1/audit/verify", headers=admin).json()["ok"]


def test_oversized_bodies_get_413_with_a_stable_code(
    api: TestClient, admin: dict[str, str], cloud: Cloud
) -> None:
    big = b'{"username": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    for path in ("/api/v1/auth/login", "/api/v1/users", "/api/v1/lake/query"):
        response = api.post(path, content=big, headers=admin | {"content-type": "application/json"})
        assert response.status_code == 413, path
        assert response.json()["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b"x" * 65536

    streamed = api.post(
        "/api/v1/users", content=chunks(), headers=admin | {"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == "payload_too_large"
    assert len(_entries(cloud, result="refused")) == 4
    assert _user_count(cloud) == 0


@pytest.mark.parametrize(
    "name", ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..", "a%2F..%2F..%2Fb", "x%00y"]
)
def test_path_traversal_in_model_names_is_refused(
    api: TestClient, admin: dict[str, str], name: str
) -> None:
    for path in (
        f"/api/v1/models/{name}/versions/1",
        f"/api/v1/models/{name}/versions/1/artifacts/edge",
    ):
        response = api.get(path, headers=admin)
        assert response.status_code in (400, 404), (path, response.status_code)
    upload = api.post(
        f"/api/v1/models/{name}/versions",
        files={"edge": ("m.onnx", b"not a model")},
        headers=admin,
    )
    assert upload.status_code in (400, 404)
    assert not list(Path(api.app.state.cloud.settings.data_dir).rglob("passwd"))  # type: ignore[attr-defined]


def test_path_traversal_in_stream_names_is_refused(cloud: Cloud) -> None:
    import pyarrow as pa

    table = pa.table({"x": [1]})
    for stream in ("../escape", "a/../../b", "..", "/abs"):
        with pytest.raises(ValueError):
            cloud.lake.commit_batch(stream, "gw-1", 1, table)
    root = cloud.settings.data_dir
    assert not (root / "escape").exists() and not (root.parent / "escape").exists()


# --- the audit log ----------------------------------------------------------------------------


def _events(n: int, who: str = "alice") -> list[audit.Event]:
    return [
        audit.Event(who, "admin", f"POST /api/v1/thing/{i}", f"thing={i}", "10.0.0.1", "ok", 200)
        for i in range(n)
    ]


def _fill(cloud: Cloud, n: int) -> None:
    for i, event in enumerate(_events(n)):
        with cloud.sessions() as session:
            audit.append(session, event, 1000.0 + i)


def _verify(cloud: Cloud) -> audit.Verification:
    with cloud.session() as session:
        return audit.verify(session)


def test_intact_chain_verifies(cloud: Cloud) -> None:
    _fill(cloud, 5)
    result = _verify(cloud)
    assert (result.ok, result.entries, result.head_seq, result.problems) == (True, 5, 5, [])


def test_edited_entry_is_named(cloud: Cloud) -> None:
    _fill(cloud, 5)
    with cloud.session() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 3).values(actor="bob"))
    result = _verify(cloud)
    assert not result.ok
    assert [(p.seq, p.kind) for p in result.problems] == [(3, "edited")]


def test_deleted_entry_is_named(cloud: Cloud) -> None:
    _fill(cloud, 5)
    with cloud.session() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    assert [(p.seq, p.kind) for p in _verify(cloud).problems] == [(2, "deleted")]


def test_deleted_newest_entry_is_named(cloud: Cloud) -> None:
    _fill(cloud, 5)
    with cloud.session() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    [problem] = _verify(cloud).problems
    assert (problem.seq, problem.kind) == (5, "deleted")


def test_reordered_entries_are_named(cloud: Cloud) -> None:
    _fill(cloud, 5)
    with cloud.session() as session:  # swap entries 3 and 4
        for old, new in ((3, -1), (4, 3), (-1, 4)):
            session.execute(text(f"UPDATE audit_log SET seq = {new} WHERE seq = {old}"))
    problems = _verify(cloud).problems
    assert {p.kind for p in problems} == {"reordered"}
    assert {p.seq for p in problems} == {3, 4}


def test_replaced_entry_with_recomputed_hash_is_named(cloud: Cloud) -> None:
    _fill(cloud, 5)
    with cloud.session() as session:
        row = session.get(AuditEntryRow, 2)
        assert row is not None
        row.actor = "bob"
        row.hash = audit.chain_hash(row.prev_hash, {k: getattr(row, k) for k in audit._FIELDS})
    assert [(p.seq, p.kind) for p in _verify(cloud).problems] == [(2, "edited")]


def test_concurrent_writers_do_not_fork_the_chain(cloud: Cloud) -> None:
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for event in _events(10, f"writer-{k}"):
                with cloud.sessions() as session:
                    audit.append(session, event, time.time())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    result = _verify(cloud)
    assert (result.ok, result.entries, result.head_seq) == (True, 40, 40)


def test_audit_api_filters_and_long_texts_are_cut(
    cloud: Cloud, api: TestClient, admin: dict[str, str]
) -> None:
    with cloud.sessions() as session:
        audit.append(
            session, audit.Event("x" * 500, "admin", "POST /a", "t" * 5000, "c", "ok", 200), 10.0
        )
    _fill(cloud, 3)
    entries = api.get("/api/v1/audit", params={"actor": "alice", "since": 1001}, headers=admin)
    assert [e["target"] for e in entries.json()] == ["thing=1", "thing=2"]
    [long] = _entries(cloud, until=10.0)
    assert len(long.actor) == 200 and len(long.target) == audit.MAX_TEXT
    assert _verify(cloud).ok


# --- the CLI over the same app ------------------------------------------------------------------


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


def test_cli_user_login_audit_verify(
    cli_on: CliRunner, admin: dict[str, str], cloud: Cloud, tmp_path: Path
) -> None:
    token = admin["Authorization"].removeprefix("Bearer ")
    env = {"HYBRIDAI_TOKEN": token, "HYBRIDAI_PASSWORD": PASSWORD}
    added = cli_on.invoke(cli, ["user", "add", "vera", "--role", "viewer"], env=env)
    assert added.exit_code == 0, added.output
    listed = cli_on.invoke(cli, ["user", "list", "--json"], env=env)
    assert '"vera"' in listed.output
    logged = cli_on.invoke(cli, ["login", "vera"], env={"HYBRIDAI_PASSWORD": PASSWORD})
    assert logged.exit_code == 0, logged.output
    stored = tmp_path / "config" / "token"
    assert stored.stat().st_mode & 0o777 == 0o600
    who = cli_on.invoke(cli, ["audit", "list"])  # as vera now: a viewer may not
    assert who.exit_code == 1 and "403" in who.output
    out = cli_on.invoke(cli, ["logout"])
    assert out.exit_code == 0 and not stored.exists()
    created = cli_on.invoke(cli, ["token", "create", "ci", "--role", "viewer"], env=env)
    assert created.exit_code == 0 and "hai_api_" in created.output
    verified = cli_on.invoke(cli, ["audit", "verify"], env=env)
    assert verified.exit_code == 0 and "intact" in verified.output, verified.output
    listed = cli_on.invoke(cli, ["audit", "list", "--actor", "vera", "--json"], env=env)
    assert "POST /api/v1/auth/login" in listed.output
    with cloud.session() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    broken = cli_on.invoke(cli, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "entry 2 was deleted" in broken.output
