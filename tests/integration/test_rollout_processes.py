"""Rollouts across a real cloud and three real edge processes, over mTLS, driven by the API.

The failing version is an artifact the runtime cannot load (``_rollouts.unloadable``): it is
registered, hashed and signed like any other, so each device downloads and verifies it and
then fails to LOAD it. Only the canary ever receives it: the abort threshold fires on the
canary's report and every edge ends on the previous version, the canary having served it
all along. Then a good version goes out with a pause in the middle and succeeds, proving an
aborted rollout does not block the next. Last, a version no request reaches is held at its
canary, never promoted, and ``rollout start --wait`` ends saying so (exit 1).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _fleet import MODEL, infer, local_fleet, upload_and_deploy
from _models import train_classifier_onnx
from _rollouts import unloadable
from hybridai.cli.main import app as cli
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow

EDGES = (("edge-a", "north"), ("edge-b", "north"), ("edge-c", "south"))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet", {"HYBRIDAI_CLOUD_ROLLOUT_TICK_S": "0.5"}) as f:
        for device, site in EDGES:
            f.start_edge(device, site)
        f.wait_enrolled(len(EDGES))
        yield f


def _register(fleet: LocalFleet, data: bytes) -> str:
    info = fleet.call("POST", f"/api/v1/models/{MODEL}/versions", files={"edge": ("e", data)})
    return str(info["version"])


def _start(fleet: LocalFleet, version: str, soak_s: float) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "version": version,
        "canary_share": 0.34,
        "step_share": 0.33,
        "soak_s": soak_s,
        "abort_unhealthy_share": 0.05,
        "device_timeout_s": 40,
        "gates": {"allow_idle": True},  # no inference traffic here: loading is what is tested
    }
    rollout: dict[str, Any] = fleet.call("POST", "/api/v1/rollouts", json=body)
    return rollout


def _get(fleet: LocalFleet, rollout_id: str) -> dict[str, Any]:
    rollout: dict[str, Any] = fleet.call("GET", f"/api/v1/rollouts/{rollout_id}")
    return rollout


def _wait_status(fleet: LocalFleet, rollout_id: str, status: str) -> dict[str, Any]:
    wait_for(f"rollout {status}", lambda: _get(fleet, rollout_id)["status"] == status, 60)
    return _get(fleet, rollout_id)


def _versions(fleet: LocalFleet) -> dict[str, str]:
    found = {}
    for device in fleet.edges:
        models = {m["name"]: m for m in fleet.edge_status(device)["models"]}
        found[device] = models[MODEL]["version"] if MODEL in models else "-"
    return found


def test_abort_rolls_back_then_a_paused_rollout_resumes_and_succeeds(
    fleet: LocalFleet, classifier_onnx: bytes
) -> None:
    upload_and_deploy(fleet, classifier_onnx)
    wait_for("every edge on v1", lambda: fleet.serving(MODEL, "1"), 60)
    broken = _register(fleet, unloadable(train_classifier_onnx(seed=3)))
    good = _register(fleet, train_classifier_onnx(seed=4))

    # A version the canary cannot load: the abort fires, nobody else ever gets it.
    first = _start(fleet, broken, soak_s=1)
    assert (first["status"], first["updated"]) == ("running", ["edge-a"])
    aborted = _wait_status(fleet, first["rollout_id"], "aborted")
    assert f"edge-a: could not load v{broken}" in aborted["reason"]
    assert aborted["step"] == 1 and aborted["updated"] == []
    assert _versions(fleet) == {"edge-a": "1", "edge-b": "1", "edge-c": "1"}
    answer = infer(fleet.edges["edge-a"].url)
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"

    # The next rollout is not blocked; paused after its canary, it holds still.
    second = _start(fleet, good, soak_s=2)
    wait_for("the canary on the new version", lambda: _versions(fleet)["edge-a"] == good, 30)
    paused = fleet.call("POST", f"/api/v1/rollouts/{second['rollout_id']}/pause")
    assert paused["status"] == "paused" and paused["step"] == 1
    time.sleep(4)  # longer than the soak: a running rollout would have grown by now
    held = _get(fleet, second["rollout_id"])
    assert (held["status"], held["step"]) == ("paused", 1)
    assert _versions(fleet) == {"edge-a": good, "edge-b": "1", "edge-c": "1"}

    fleet.call("POST", f"/api/v1/rollouts/{second['rollout_id']}/resume")
    done = _wait_status(fleet, second["rollout_id"], "succeeded")
    assert [len(step["devices"]) for step in done["steps"]] == [1, 1, 1]
    wait_for(f"every edge on v{good}", lambda: fleet.serving(MODEL, good), 30)
    models = {m["name"]: m for m in fleet.call("GET", "/api/v1/models")}
    assert models[MODEL]["deployed_version"] == good
    assert models[MODEL]["stages"]["1"] == "archived"
    assert models[MODEL]["stages"][good] == "production"
    # Without traffic a canary is never promoted: the step is held, and `--wait` says so (exit 1).
    idle = _register(fleet, train_classifier_onnx(seed=5))
    token = (fleet.workspace / "cloud" / "admin.token").read_text().strip()
    assert fleet.cloud is not None
    args = ["--ca-file", str(fleet.ca_file), "rollout", "start", MODEL, idle]
    args += ["--cloud", fleet.cloud.url, "--soak", "0", "--traffic-timeout", "2s", "--wait"]
    waited = CliRunner().invoke(cli, args, env={"HYBRIDAI_TOKEN": token, "COLUMNS": "200"})
    said = " ".join(waited.output.split())
    assert waited.exit_code == 1, waited.output
    assert "paused: held: too little traffic within 2s (edge-a 0/20 requests)" in said
    held = fleet.call("GET", "/api/v1/rollouts")[0]
    assert (held["status"], held["updated"]) == ("paused", ["edge-a"])
    assert {m["name"]: m for m in fleet.call("GET", "/api/v1/models")}[MODEL][
        "deployed_version"
    ] == good
    # Every control action is in the audit log.
    actions = {e["action"] for e in fleet.call("GET", "/api/v1/audit")}
    assert any("rollouts" in a for a in actions), actions
