"""Device tags and capability-aware rollout targets through the cloud API, on every backend.

Devices enroll over the real enrollment route and "report" through the status route (an
operator may act for a device); rollouts are advanced with the advance route, the background
tick being set far off so every step is the test's own.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.devices import fleet
from hybridai.cloud.models import registry
from hybridai.cloud.settings import CloudSettings
from hybridai.governance import audit
from hybridai.link import pki
from hybridai.protocol.fleet import MAX_TAGS

CPU = ["CPUExecutionProvider"]


@pytest.fixture
def cloud(metadata_url: str, tmp_path: Path) -> Iterator[Cloud]:
    settings = CloudSettings(
        data_dir=tmp_path / "cloud",
        database_url=metadata_url,
        rollout_tick_s=3600,
        retraining_tick_s=3600,
    )
    opened = open_cloud(settings)
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    with TestClient(create_app(cloud)) as client:
        yield client


@pytest.fixture
def admin(cloud: Cloud) -> dict[str, str]:
    return {"Authorization": f"Bearer {cloud.settings.admin_token_path.read_text().strip()}"}


def _token(
    api: TestClient, admin: dict[str, str], site: str, device: str, tags: dict[str, str]
) -> Any:
    body = {"site": site, "device_id": device, "tags": tags}
    return api.post("/api/v1/enrollment-tokens", json=body, headers=admin)


def _enroll(
    api: TestClient,
    admin: dict[str, str],
    device: str,
    site: str = "north",
    *,
    tags: dict[str, str] | None = None,
    declared: dict[str, str] | None = None,
    memory_mb: int = 2048,
    providers: list[str] | None = None,
) -> dict[str, Any]:
    token = _token(api, admin, site, device, tags or {})
    assert token.status_code == 201, token.text
    body = {
        "token": token.json()["token"],
        "device_id": device,
        "kind": "edge-server",
        "capabilities": {
            "cores": 4,
            "memory_mb": memory_mb,
            "execution_providers": CPU if providers is None else providers,
        },
        "agent_version": "t",
        "csr": pki.device_csr(pki.new_key(), device),
        "tags": declared or {},
    }
    enrolled = api.post("/api/v1/enroll", json=body)
    assert enrolled.status_code == 200, enrolled.text
    return _device(api, admin, device)


def _device(api: TestClient, admin: dict[str, str], device: str) -> dict[str, Any]:
    listed = api.get("/api/v1/devices", headers=admin)
    assert listed.status_code == 200, listed.text
    return next(d for d in listed.json() if d["device_id"] == device)


def _tag(api: TestClient, headers: dict[str, str], device: str, **body: Any) -> Any:
    return api.patch(f"/api/v1/devices/{device}/tags", json=body, headers=headers)


# --- tags --------------------------------------------------------------------------------


def test_tags_come_from_the_token_and_the_device_and_operators_edit_them(
    api: TestClient, admin: dict[str, str], cloud: Cloud
) -> None:
    token = _token(api, admin, "north", "gw-1", {"line": "3"})
    assert token.json()["tags"] == {"line": "3"}
    # the device declares line=9 and zone=a; the operator's token wins on line
    device = _enroll(api, admin, "gw-1", tags={"line": "3"}, declared={"line": "9", "zone": "a"})
    assert device["tags"] == {"line": "3", "zone": "a"}

    changed = _tag(api, admin, "gw-1", add={"shift": "night"}, remove=["zone", "absent"])
    assert changed.status_code == 200, changed.text
    assert changed.json()["tags"] == {"line": "3", "shift": "night"}
    assert _device(api, admin, "gw-1")["tags"] == {"line": "3", "shift": "night"}

    # re-enrolling (an expired certificate, a revocation) keeps what operators set
    again = _enroll(api, admin, "gw-1", declared={"rack": "r2"})
    assert again["tags"] == {"line": "3", "rack": "r2", "shift": "night"}

    with cloud.session() as session:
        [entry] = audit.list_entries(session, action="PATCH /api/v1/devices/{device_id}/tags")
    assert (entry.actor, entry.result, entry.status) == ("bootstrap-admin", "ok", 200)
    assert "gw-1" in entry.target


def test_tag_edits_are_refused_clearly_and_change_nothing(
    api: TestClient, admin: dict[str, str], cloud: Cloud
) -> None:
    _enroll(api, admin, "gw-1", tags={"line": "3"})
    with cloud.session() as session:
        viewer = fleet.create_api_token(session, "vera", "viewer", time.time())
    refused = _tag(api, {"Authorization": f"Bearer {viewer}"}, "gw-1", add={"line": "4"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    with cloud.session() as session:
        [entry] = audit.list_entries(session, actor="vera")
    assert (entry.result, entry.status) == ("denied", 403)

    bad_key = _tag(api, admin, "gw-1", add={"Line 3": "x"})
    assert bad_key.status_code == 400
    assert "tag key 'Line 3' is not valid" in bad_key.json()["error"]
    bad_value = _tag(api, admin, "gw-1", add={"line": "3 4"})
    assert "invalid value" in bad_value.json()["error"]
    both = _tag(api, admin, "gw-1", add={"line": "4"}, remove=["line"])
    assert both.status_code == 400 and "both added and removed" in both.json()["error"]
    ghost = _tag(api, admin, "ghost", add={"line": "4"})
    assert ghost.status_code == 404 and ghost.json()["code"] == "unknown_device"
    too_many = {f"k{i}": "v" for i in range(MAX_TAGS)}
    full = _tag(api, admin, "gw-1", add=too_many)
    assert full.status_code == 400 and f"at most {MAX_TAGS} tags" in full.json()["error"]
    bad_token = _token(api, admin, "north", "gw-2", {"-x": "1"})
    assert bad_token.status_code == 400 and "tag key '-x'" in bad_token.json()["error"]

    assert _device(api, admin, "gw-1")["tags"] == {"line": "3"}


# --- rollout targets -----------------------------------------------------------------------


def _big_model(weights_mb: float) -> bytes:
    """A valid MatMul model whose weights alone take ``weights_mb`` MB."""
    columns = int(weights_mb * 2**20 / 4 / 4)
    weight = numpy_helper.from_array(np.ones((4, columns), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["out"])],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, columns])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


@pytest.fixture
def model(cloud: Cloud, classifier_onnx: bytes) -> None:
    """pm v1 and v2 (small) and v3 (3 MB of weights) registered, v1 deployed."""
    with cloud.session() as session:
        for artifact in (classifier_onnx, classifier_onnx, _big_model(3.0)):
            registry.register_version(
                session, cloud.blobs, "pm", {"edge": artifact}, {}, {}, "t", time.time(),
                signing_key=cloud.signing_key,
            )  # fmt: skip


def _deploy(api: TestClient, admin: dict[str, str], version: str, **needs: Any) -> None:
    body = {"name": "pm", "version": version, "policy": {"needs": needs}}
    deployed = api.put("/api/v1/deployments/pm", json=body, headers=admin)
    assert deployed.status_code == 200, deployed.text


def _runs(api: TestClient, admin: dict[str, str], device: str) -> str | None:
    desired = api.get(f"/api/v1/devices/{device}/desired-state", headers=admin)
    assert desired.status_code == 200, desired.text
    models = desired.json()["models"]
    return models[0]["version"] if models else None


def _report(api: TestClient, admin: dict[str, str], device: str, version: str) -> None:
    report = {
        "device_id": device,
        "agent_version": "t",
        "uptime_s": 1,
        "models": [{"name": "pm", "version": version, "variant": "edge", "state": "ready"}],
        "model_health": [{"name": "pm", "version": version, "requests": 20}],
    }
    posted = api.post(f"/api/v1/devices/{device}/status", json=report, headers=admin)
    assert posted.status_code == 204, posted.text


def _run_to_the_end(
    api: TestClient, admin: dict[str, str], rollout: dict[str, Any]
) -> dict[str, Any]:
    """Every updated device reports the version it is told to run; advance until it ends."""
    path = f"/api/v1/rollouts/{rollout['rollout_id']}"
    for _ in range(10):
        if rollout["status"] in ("succeeded", "aborted"):
            return rollout
        for device in rollout["updated"]:
            _report(api, admin, device, str(_runs(api, admin, device)))
        advanced = api.post(f"{path}/advance", headers=admin)
        assert advanced.status_code == 200, advanced.text
        rollout = advanced.json()
    raise AssertionError(f"the rollout did not end: {rollout}")


def _start(api: TestClient, admin: dict[str, str], version: str, **target: Any) -> Any:
    body = {"model": "pm", "version": version, "target": target, "soak_s": 0}
    return api.post("/api/v1/rollouts", json=body, headers=admin)


def test_a_rollout_targets_by_tag_and_site_together(
    api: TestClient, admin: dict[str, str], model: None
) -> None:
    _enroll(api, admin, "a1", "north", tags={"line": "3"})
    _enroll(api, admin, "a2", "north", tags={"line": "4"})
    _enroll(api, admin, "a3", "south", tags={"line": "3"})
    _enroll(api, admin, "a4", "north", declared={"line": "3", "zone": "x"})
    _deploy(api, admin, "1")

    started = _start(api, admin, "2", sites=["north"], tags={"line": "3"})

    assert started.status_code == 201, started.text
    assert started.json()["devices"] == ["a1", "a4"] and started.json()["skipped"] == []
    done = _run_to_the_end(api, admin, started.json())
    assert done["status"] == "succeeded"
    assert [_runs(api, admin, d) for d in ("a1", "a2", "a3", "a4")] == ["2", "1", "1", "2"]
    # every tag given must match; an unmatched tag selects nothing
    none = _start(api, admin, "3", tags={"line": "3", "zone": "y"})
    assert none.status_code == 400 and "selects no devices" in none.json()["error"]


def test_devices_that_cannot_run_the_version_are_skipped_at_start_and_keep_theirs(
    api: TestClient, admin: dict[str, str], model: None
) -> None:
    _enroll(api, admin, "big-1", memory_mb=4096)
    _enroll(api, admin, "big-2", memory_mb=4096)
    _enroll(api, admin, "tiny", memory_mb=2)  # v1 fits, v3's 3 MB of weights do not
    _enroll(api, admin, "old", providers=[])  # reports no ONNX Runtime providers
    _deploy(api, admin, "1", execution_provider="CPUExecutionProvider")
    assert [_runs(api, admin, d) for d in ("big-1", "tiny", "old")] == ["1", "1", None]

    started = _start(api, admin, "3")

    assert started.status_code == 201, started.text
    rollout = started.json()
    assert rollout["devices"] == ["big-1", "big-2"]
    skipped = {s["device_id"]: s["reason"] for s in rollout["skipped"]}
    assert skipped == {
        "old": "lacks ONNX Runtime provider CPUExecutionProvider (offers none reported)",
        "tiny": "has 2 MB of memory, the model needs 3.0 MB (3.0 MB weights)",
    }
    done = _run_to_the_end(api, admin, rollout)
    assert done["status"] == "succeeded" and done["skipped"] == rollout["skipped"]
    # the whole fleet's rollout became the deployment; the skipped devices keep what they ran
    deployments = api.get("/api/v1/deployments", headers=admin).json()
    assert [(d["name"], d["version"]) for d in deployments] == [("pm", "3")]
    assert [_runs(api, admin, d) for d in ("big-1", "big-2", "tiny", "old")] == [
        "3",
        "3",
        "1",
        None,
    ]
    shown = api.get(f"/api/v1/rollouts/{rollout['rollout_id']}", headers=admin).json()
    assert shown["skipped"] == rollout["skipped"]


def test_a_target_no_device_of_which_can_run_the_version_is_refused(
    api: TestClient, admin: dict[str, str], model: None
) -> None:
    _enroll(api, admin, "tiny", tags={"line": "3"}, memory_mb=2)
    _enroll(api, admin, "big", tags={"line": "4"}, memory_mb=4096)
    _deploy(api, admin, "1")

    refused = _start(api, admin, "3", tags={"line": "3"})

    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "no device of the target can run pm v3: tiny: has 2 MB of memory, the model needs "
        "3.0 MB (3.0 MB weights)"
    )
    assert api.get("/api/v1/rollouts", headers=admin).json() == []
    bad_tag = _start(api, admin, "2", tags={"Line": "3"})
    assert bad_tag.status_code == 400 and "tag key 'Line'" in bad_tag.json()["error"]


# --- the CLI over the same app --------------------------------------------------------------


@pytest.fixture
def cli_on(
    api: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> CliRunner:
    """The CLI talking to the in-process app as the admin (httpx transport swapped)."""

    @contextlib.contextmanager
    def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[TestClient]:
        api.headers.clear()  # the app stays up: the CLI's `with` must not close it
        if token:
            api.headers["Authorization"] = f"Bearer {token}"
        yield api

    monkeypatch.setattr(_api, "client", in_process)
    monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HYBRIDAI_TOKEN", admin["Authorization"].removeprefix("Bearer "))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_cli_tags_devices_lists_them_and_rolls_out_by_tag(
    cli_on: CliRunner, api: TestClient, admin: dict[str, str], model: None
) -> None:
    made = cli_on.invoke(
        cli, ["fleet", "enroll-token", "north/gw-1", "--tag", "line=3,zone=a", "--json"]
    )
    assert made.exit_code == 0, made.output
    assert '"line": "3"' in made.output and '"zone": "a"' in made.output
    _enroll(api, admin, "gw-1", tags={"line": "3", "zone": "a"})
    _enroll(api, admin, "gw-2", memory_mb=2)
    _deploy(api, admin, "1")

    tagged = cli_on.invoke(cli, ["fleet", "tag", "gw-2", "--add", "line=3", "--add", "shift=night"])
    assert tagged.exit_code == 0, tagged.output
    assert "gw-2: line=3, shift=night" in tagged.output
    removed = cli_on.invoke(cli, ["fleet", "tag", "gw-1", "--remove", "zone"])
    assert removed.exit_code == 0 and "gw-1: line=3" in removed.output
    listed = cli_on.invoke(cli, ["fleet", "list", "--json"])
    assert listed.exit_code == 0 and '"shift": "night"' in listed.output
    table = cli_on.invoke(cli, ["fleet", "list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "line=3, shift=night" in table.output, table.output

    started = cli_on.invoke(cli, ["rollout", "start", "pm", "3", "--tag", "line=3"])
    assert started.exit_code == 0, started.output
    said = " ".join(started.output.split())  # Rich wraps long lines
    assert "1/1 devices, 1 skipped" in said
    assert "skipped gw-2: has 2 MB of memory, the model needs 3.0 MB" in said

    for args, message in [
        (["fleet", "tag", "gw-1"], "nothing to change"),
        (["fleet", "tag", "gw-1", "--add", "line"], "is not a tag: use KEY=VALUE"),
        (["fleet", "tag", "gw-1", "--add", "Line=3"], "tag key 'Line' is not valid"),
        (["rollout", "start", "pm", "2", "--tag", "=3"], "is not a tag"),
    ]:
        failed = cli_on.invoke(cli, args)
        assert failed.exit_code != 0, (args, failed.output)
        assert message in " ".join(failed.output.split()), (args, failed.output)


def test_cli_starts_a_rollout_with_its_traffic_gate_or_allowing_idle_devices(
    cli_on: CliRunner, api: TestClient, admin: dict[str, str], model: None
) -> None:
    _enroll(api, admin, "gw-1")
    _deploy(api, admin, "1")
    args = ["rollout", "start", "pm", "2", "--min-requests", "5", "--traffic-timeout", "2m"]

    gated = cli_on.invoke(cli, [*args, "--json"])

    assert gated.exit_code == 0, gated.output
    request = json.loads(gated.output)["request"]
    assert request["traffic_timeout_s"] == 120.0
    assert (request["gates"]["min_requests"], request["gates"]["allow_idle"]) == (5, False)
    rollout_id = json.loads(gated.output)["rollout_id"]
    assert cli_on.invoke(cli, ["rollout", "abort", rollout_id]).exit_code == 0
    idle = cli_on.invoke(cli, ["rollout", "start", "pm", "2", "--allow-idle", "--json"])
    assert idle.exit_code == 0, idle.output
    assert json.loads(idle.output)["request"]["gates"]["allow_idle"] is True
    refused = cli_on.invoke(cli, ["rollout", "start", "pm", "3", "--min-requests", "0"])
    assert refused.exit_code != 0 and "min-requests" in refused.output


def test_migrated_devices_start_untagged(cloud: Cloud, api: TestClient) -> None:
    """Rows written without tags (as before migration 0010) read back as untagged."""
    from sqlalchemy import text

    with cloud.session() as session:
        session.execute(
            text(
                "INSERT INTO devices (device_id, site, kind, capabilities, enrolled_at, revoked) "
                "VALUES ('legacy', 'north', 'edge-server', '{\"cores\": 1, \"memory_mb\": 64}', "
                "1.0, false)"
            )
        )
    with cloud.session() as session:
        assert fleet.get_device(session, "legacy").tags == {}


def test_onnx_helper_model_is_as_big_as_asked() -> None:
    data = _big_model(3.0)
    assert 3 * 2**20 <= len(data) < 3 * 2**20 + 4096
    onnx.checker.check_model(onnx.load_model_from_string(data))
