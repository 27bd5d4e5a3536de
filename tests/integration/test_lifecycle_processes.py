"""The model lifecycle across real processes: drift -> retraining -> fleet; offline-first edges."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from _fleet import MODEL, PATIENT_EDGE, Feeder, assert_probabilities, infer, local_fleet
from hybridai.cloud.pipelines.training import split_rows
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import FEATURES, Plant, pm_training_spec
from hybridai.protocol.registry import TrainingSpec

pytestmark = pytest.mark.slow
EDGES = ("edge-a", "edge-b")
START = time.time() - 30 * 86400


def _replay(device: str, seed: int) -> Plant:
    """The same plant a Feeder drives: its readings are the ones the model was trained on."""
    return Plant([f"{device}-m{i:02d}" for i in range(6)], seed=seed, start_ts=START)


def _serve_readings(edge_url: str, plants: list[Plant], ticks: int, every: int = 1) -> None:
    """Serve the plants' readings of ``ticks`` ticks (every ``every``-th) from the edge."""
    rows: list[list[float]] = []
    for tick in range(ticks):
        for plant in plants:
            telemetry, _ = plant.step()
            if tick % every == 0:
                rows += [[r[f] for f in FEATURES] for r in telemetry]
    body = {
        "inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}]
    }
    response = httpx.post(f"{edge_url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text


def _training_rows(fleet: LocalFleet, version: str) -> object:
    assert fleet.api is not None
    response = fleet.api.get(f"/api/v1/models/{MODEL}/versions/{version}/training-rows")
    assert response.status_code == 200, response.text
    return pq.read_table(io.BytesIO(response.content))


def test_drift_retrains_and_the_new_version_reaches_every_edge(tmp_path: Path) -> None:
    cloud_env = {"HYBRIDAI_CLOUD_RETRAINING_TICK_S": "0.5"}
    with local_fleet(tmp_path, cloud_env) as fleet:
        for device in EDGES:
            fleet.start_edge(device, "plant", env=PATIENT_EDGE)
        fleet.wait_enrolled(len(EDGES))
        feeders = {}
        for n, device in enumerate(EDGES):
            feeders[device] = Feeder(fleet.edges[device].url, device, machines=6, seed=20 + n)
            feeders[device].plant = _replay(device, 20 + n)  # same start time as the replays
            feeders[device].feed(ticks=250)
        fleet.wait_drained()
        v1 = fleet.train(pm_training_spec(MODEL).model_dump())
        wait_for("v1 on every edge", lambda: fleet.serving(MODEL, v1["version"]), 30)
        fleet.call(
            "PUT",
            f"/api/v1/models/{MODEL}/retraining",
            json={"mode": "auto-to-production", "psi_threshold": 1.0, "min_window": 100},
        )

        # Serving what it was trained on: windows fill, PSI stays low, nothing retrains.
        # Each edge replays both plants over the whole period, so its window is like the lake.
        replays = {d: [_replay(e, 20 + n) for n, e in enumerate(EDGES)] for d in EDGES}
        for device, plants in replays.items():
            _serve_readings(fleet.edges[device].url, plants, ticks=250, every=5)
        wait_for(
            "drift reports",
            lambda: all(
                MODEL
                in (fleet.call("GET", f"/api/v1/devices/{d}")["status"] or {}).get("drift", {})
                for d in EDGES
            ),
            15,
        )
        time.sleep(1.5)
        status = fleet.call("GET", f"/api/v1/models/{MODEL}/retraining")
        assert status["last_run_id"] is None, status
        drift = fleet.edge_status(EDGES[0])["drift"][MODEL]
        assert drift["version"] == v1["version"] and drift["window"] >= 100
        assert drift["psi_max"] < 1.0, drift

        # Drift: the sensors shift; the edges see it in what they serve and the cloud retrains.
        injected = time.monotonic()
        for feeder in feeders.values():
            feeder.plant.drift(1.0)
            feeder.feed(ticks=40)
        fleet.wait_drained()  # the lake holds the new regime before anyone retrains on it
        for device, plants in replays.items():
            for plant in plants:
                plant.drift(1.0)
            _serve_readings(fleet.edges[device].url, plants, ticks=50)
        wait_for("v2 on every edge", lambda: fleet.serving(MODEL, "2"), 60)
        assert time.monotonic() - injected < 60
        status = fleet.call("GET", f"/api/v1/models/{MODEL}/retraining")
        assert "PSI" in status["last_reason"], status
        run = fleet.call("GET", f"/api/v1/training-runs/{status['last_run_id']}")
        assert run["status"] == "succeeded" and run["version"] == "2"
        assert fleet.call("GET", f"/api/v1/models/{MODEL}/versions/2")["stage"] == "production"

        # Lineage: v1's exact rows, read again by time travel after the lake moved on.
        info = fleet.call("GET", f"/api/v1/models/{MODEL}/versions/1")["lineage"]
        rows_v1 = _training_rows(fleet, "1")
        assert rows_v1.num_rows == info["rows"]["total"] + info["rows"]["dropped_null"]
        spec = TrainingSpec.model_validate(info["spec"])
        assert split_rows(rows_v1, spec).validation_digest() == info["validation_sha256"]
        assert _training_rows(fleet, "2").num_rows > rows_v1.num_rows


def test_offline_first_edge_serves_a_bundle_then_joins_the_fleet(
    tmp_path: Path, classifier_onnx: bytes
) -> None:
    with local_fleet(tmp_path) as fleet:
        assert fleet.api is not None
        fleet.call(
            "POST",
            f"/api/v1/models/{MODEL}/versions",
            files={"edge": ("edge.onnx", classifier_onnx)},
        )
        response = fleet.api.get(f"/api/v1/models/{MODEL}/versions/1/bundle")
        assert response.status_code == 200, response.text
        bundle = tmp_path / "bundle.tar"
        bundle.write_bytes(response.content)
        token = fleet.call(
            "POST",
            "/api/v1/enrollment-tokens",
            json={"site": "remote", "device_id": "edge-x", "ttl_s": 600},
        )["token"]

        # First boot with no cloud at all: the edge serves the bundled, verified model.
        fleet.kill("cloud")
        env = {
            **PATIENT_EDGE,
            "HYBRIDAI_EDGE_BUNDLE_FILE": str(bundle),
            "HYBRIDAI_EDGE_ENROLL_TOKEN": token,
            # A first boot that never reached the cloud holds no site keys: a lab bench.
            "HYBRIDAI_EDGE_LAN_AUTH": "open",
        }
        edge = fleet.start_edge("edge-x", "remote", env=env, enroll=False)
        status = fleet.edge_status("edge-x")
        assert [(m["name"], m["version"], m["state"]) for m in status["models"]] == [
            (MODEL, "1", "ready")
        ]
        assert_probabilities(infer(edge.url, {"placement": "edge"}))
        pinned = (tmp_path / "edge-x" / "models" / "trusted-signing-key.pub").read_text().strip()
        assert pinned in bundle.read_bytes().decode("latin-1")

        # The cloud comes up: the edge enrolls and follows the fleet's desired state from then on.
        fleet.start_cloud()
        fleet.wait_enrolled(1, timeout_s=45)
        fleet.call(
            "POST",
            f"/api/v1/models/{MODEL}/versions",
            files={"edge": ("edge.onnx", classifier_onnx)},
        )
        fleet.call("PUT", f"/api/v1/deployments/{MODEL}", json={"name": MODEL, "version": "2"})
        wait_for("v2 on the joined edge", lambda: fleet.serving(MODEL, "2"), 45)
