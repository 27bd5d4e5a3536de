"""The cloud's v2 infer path reads no database per request, and still sees every change.

What a model name serves (``cloud.models.resolution``) and who may infer
(``cloud.infer_access``) are remembered between requests (issue 13, "a lean hot path"). A
promotion, a rollback, a remote tier set or removed and a revoked token made through this
cloud take effect on the next request; another replica's change within a second. On SQLite
and PostgreSQL, through the cloud app's own hot path (``serving.v2_fast``).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from _fleet import error_of, infer_body
from _models import train_classifier_onnx
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.models import registry
from hybridai.cloud.settings import CloudSettings
from hybridai.demo.fleet import wait_for
from hybridai.storage.metadata import create_engine_for, session_factory

MODEL = "pm"


@pytest.fixture
def cloud(metadata_url: str, tmp_path: Path) -> Iterator[Cloud]:
    opened = open_cloud(CloudSettings(data_dir=tmp_path / "cloud", database_url=metadata_url))
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    with TestClient(create_app(cloud)) as client:
        yield client


@pytest.fixture
def admin(cloud: Cloud) -> dict[str, str]:
    return {"Authorization": f"Bearer {cloud.settings.admin_token_path.read_text().strip()}"}


def _upload(api: TestClient, admin: dict[str, str], seed: int) -> str:
    onnx = train_classifier_onnx(seed=seed)
    answer = api.post(
        f"/api/v1/models/{MODEL}/versions",
        files={"edge": ("edge.onnx", onnx), "cloud": ("cloud.onnx", onnx)},
        headers=admin,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["version"])


def _deploy(api: TestClient, admin: dict[str, str], version: str) -> None:
    body = {"name": MODEL, "version": version}
    answer = api.put(f"/api/v1/deployments/{MODEL}", json=body, headers=admin)
    assert answer.status_code == 200, answer.text


def _infer(api: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    answer = api.post(f"/v2/models/{MODEL}/infer", json=infer_body(3), headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _served(api: TestClient, headers: dict[str, str]) -> str:
    return str(_infer(api, headers)["model_version"])


def test_a_promotion_and_a_rollback_are_served_by_the_next_request(
    api: TestClient, admin: dict[str, str]
) -> None:
    first = _upload(api, admin, seed=0)
    _deploy(api, admin, first)
    assert [_served(api, admin) for _ in range(5)] == [first] * 5
    second = _upload(api, admin, seed=1)
    assert _served(api, admin) == first  # registered, not deployed

    promoted = api.post(
        f"/api/v1/models/{MODEL}/versions/{second}/stage",
        json={"stage": "production"},
        headers=admin,
    )
    assert promoted.status_code == 200, promoted.text
    assert _served(api, admin) == second

    _deploy(api, admin, first)  # the operator rolls back
    assert _served(api, admin) == first


def test_another_replicas_promotion_is_seen_within_a_second(
    api: TestClient, admin: dict[str, str], metadata_url: str
) -> None:
    first = _upload(api, admin, seed=0)
    second = _upload(api, admin, seed=1)
    _deploy(api, admin, first)
    assert _served(api, admin) == first
    other = create_engine_for(metadata_url)  # another replica's writes: not seen by this one's
    try:
        with session_factory(other)() as session:
            registry.set_deployment(session, MODEL, second, "replica-2", time.time())
    finally:
        other.dispose()

    wait_for("the other replica's promotion", lambda: _served(api, admin) == second, 10)


class _RemoteV2(http.server.BaseHTTPRequestHandler):
    """A v2 server that answers every infer with the label 7 (and is ready)."""

    def do_GET(self) -> None:
        self._answer({"ready": True})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        label = {"name": "label", "shape": [3], "datatype": "INT64", "data": [7, 7, 7]}
        self._answer({"model_name": MODEL, "outputs": [label]})

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def remote_v2() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RemoteV2)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_tier_set_and_removed_takes_effect_at_once(
    api: TestClient, admin: dict[str, str], remote_v2: str
) -> None:
    _deploy(api, admin, _upload(api, admin, seed=0))
    assert "tier" not in _infer(api, admin)["parameters"]

    answer = api.put(f"/api/v1/models/{MODEL}/remote", json={"url": remote_v2}, headers=admin)
    assert answer.status_code == 200, answer.text
    forwarded = _infer(api, admin)
    assert forwarded["parameters"]["tier"] == "remote"
    assert forwarded["outputs"][0]["data"] == [7, 7, 7]

    assert api.delete(f"/api/v1/models/{MODEL}/remote", headers=admin).status_code == 204
    local = _infer(api, admin)
    assert "tier" not in local["parameters"]
    assert local["parameters"]["reason"] == "served_by_cloud"


def test_infer_requests_open_no_database_session_each(
    api: TestClient, cloud: Cloud, admin: dict[str, str]
) -> None:
    _deploy(api, admin, _upload(api, admin, seed=0))
    _infer(api, admin)  # loaded, resolved, admitted
    begun: list[float] = []
    event.listen(cloud.sessions, "after_begin", lambda *_: begun.append(time.monotonic()))

    started = time.monotonic()
    for _ in range(100):
        _infer(api, admin)
    seconds = time.monotonic() - started

    # what is remembered is read again once a second (model and credential), not per request
    assert len(begun) <= 2 * (int(seconds) + 1), (len(begun), seconds)


def test_a_revoked_token_is_refused_by_the_next_request(
    api: TestClient, admin: dict[str, str]
) -> None:
    _deploy(api, admin, _upload(api, admin, seed=0))
    created = api.post("/api/v1/api-tokens", json={"name": "ci", "role": "viewer"}, headers=admin)
    assert created.status_code == 201, created.text
    viewer = {"Authorization": f"Bearer {created.json()['token']}"}
    for _ in range(3):
        _infer(api, viewer)

    token_id = created.json()["token_id"]
    assert api.delete(f"/api/v1/api-tokens/{token_id}", headers=admin).status_code == 200
    refused = api.post(f"/v2/models/{MODEL}/infer", json=infer_body(3), headers=viewer)

    assert error_of(refused) == (401, "unauthenticated")
    anonymous = api.post(f"/v2/models/{MODEL}/infer", json=infer_body(3))
    assert error_of(anonymous) == (401, "unauthenticated")


def test_a_stream_declared_restricted_stops_cloud_inference_at_the_next_request(
    api: TestClient, admin: dict[str, str]
) -> None:
    version = _upload(api, admin, seed=0)
    body = {"name": MODEL, "version": version, "policy": {"input_stream": "vitals"}}
    assert api.put(f"/api/v1/deployments/{MODEL}", json=body, headers=admin).status_code == 200
    _infer(api, admin)  # an internal stream: the cloud serves it

    restricted = {"classification": "restricted"}
    assert api.put("/api/v1/policies/vitals", json=restricted, headers=admin).status_code == 200
    refused = api.post(f"/v2/models/{MODEL}/infer", json=infer_body(3), headers=admin)

    assert error_of(refused) == (403, "forbidden")
    assert "'vitals'" in refused.json()["error"]
    internal = {"classification": "internal"}
    assert api.put("/api/v1/policies/vitals", json=internal, headers=admin).status_code == 200
    _infer(api, admin)
