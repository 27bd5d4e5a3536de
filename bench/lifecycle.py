"""Model lifecycle figures: edge variants against their cloud variant, and drift to fleet.

Per model M (the demo's ``pm``: depth-4 tree next to gradient boosting; ``pm-int8``: an MLP
and its dynamic int8 quantization; ``pm-int8-static``: static int8; ``pm-torch``: a PyTorch
MLP and its int8 variant, when the [torch] extra is installed), trained on the same plant data:
- ``M.size_ratio``: edge / cloud artifact bytes;
- ``M.latency_ratio``: edge / cloud in-process ONNX Runtime p50 of one single-row call (the
  cloud variant is the baseline, timed in the same run, alternating rounds);
- ``M.quality_delta``: edge - cloud accuracy on the held-out test split.
And ``drift_to_fleet_s``: seconds from drift injected into the sensor simulator to the retrained
version serving on every edge (real cloud and edge processes, auto-to-production policy).

Usage: python bench/lifecycle.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, show, write

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.edge_variants import latency_p50_ms
from hybridai.cloud.pipelines.training import INPUT_NAME, train
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import FEATURES, Plant, pm_training_spec
from hybridai.protocol.registry import EdgeBudget, TrainingSpec

START = time.time() - 30 * 86400


def fill_lake(lake: Lake, machines: int, ticks: int) -> None:
    plant = Plant([f"m{i:02d}" for i in range(machines)], seed=1, start_ts=1_700_000_000.0)
    telemetry: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for _ in range(ticks):
        t, f = plant.step()
        telemetry += t
        failures += f
    for stream, records in (("telemetry", telemetry), ("failures", failures)):
        rows = [
            {
                **r,
                "record_id": f"bench:{stream}:{i}",
                "device_id": "bench",
                "site": "lab",
                "date": dt.datetime.fromtimestamp(r["ts"], dt.UTC).strftime("%Y-%m-%d"),
            }
            for i, r in enumerate(records)
        ]
        lake.commit_batch(stream, "bench", 1, pa.Table.from_pylist(rows))


def specs() -> dict[str, TrainingSpec]:
    base = pm_training_spec()
    mlp = {
        "cloud_family": "mlp",
        "edge_family": "mlp",
        "edge_variant": "dynamic",
        "params": {"cloud": {"hidden_layer_sizes": [128, 64], "max_iter": 300}},
        "edge_budget": EdgeBudget(metric="accuracy", max_drop=0.02),
    }
    found = {
        "pm": base,
        "pm-int8": base.model_copy(update=mlp),
        "pm-int8-static": base.model_copy(update={**mlp, "edge_variant": "static"}),
    }
    if importlib.util.find_spec("torch") is not None:
        torch = {
            **mlp,
            "cloud_family": "mlp-torch",
            "edge_family": "mlp-torch",
            "params": {"cloud": {"hidden_layer_sizes": [128, 64], "epochs": 200}},
            "edge_budget": EdgeBudget(metric="accuracy", max_drop=0.03),
        }
        found["pm-torch"] = base.model_copy(update=torch)
    return found


def variant_figures(lake: Lake, rounds: int, runs: int) -> tuple[dict[str, float], dict[str, Any]]:
    metrics: dict[str, float] = {}
    notes: dict[str, Any] = {}
    row = np.asarray([[1.0, 60.0, 5.0, 1500.0]], dtype=np.float32)
    for name, spec in specs().items():
        result = train(lake, spec)
        edge, cloud = result.artifacts["edge"], result.artifacts["cloud"]
        edge_ms, cloud_ms = [], []
        for _ in range(rounds):  # alternate, so drift of the machine hits both alike
            cloud_ms.append(latency_p50_ms(cloud, INPUT_NAME, row, runs))
            edge_ms.append(latency_p50_ms(edge, INPUT_NAME, row, runs))
        acc = result.metrics["edge"]["accuracy"], result.metrics["cloud"]["accuracy"]
        metrics[f"{name}.size_ratio"] = round(len(edge) / len(cloud), 4)
        metrics[f"{name}.latency_ratio"] = round(median(edge_ms) / median(cloud_ms), 4)
        metrics[f"{name}.quality_delta"] = round(acc[0] - acc[1], 4)
        notes[name] = {
            "edge": result.edge_variant["how"],
            "cloud": spec.cloud_family,
            "edge_bytes": len(edge),
            "cloud_bytes": len(cloud),
            "edge_p50_ms": round(median(edge_ms), 4),
            "cloud_p50_ms": round(median(cloud_ms), 4),
            "edge_accuracy": round(acc[0], 4),
            "cloud_accuracy": round(acc[1], 4),
            "n_test": result.metrics["edge"]["n_test"],
        }
    return metrics, notes


def _replay(device: str, seed: int, machines: int) -> Plant:
    return Plant([f"{device}-m{i:02d}" for i in range(machines)], seed=seed, start_ts=START)


def _ingest(url: str, plant: Plant, ticks: int) -> None:
    produced: dict[str, list[dict[str, Any]]] = {"telemetry": [], "failures": []}
    for _ in range(ticks):
        t, f = plant.step()
        produced["telemetry"] += t
        produced["failures"] += f
    for stream, records in produced.items():
        if records:
            response = httpx.post(
                f"{url}/api/v1/streams/{stream}/records", json={"records": records}, timeout=60
            )
            response.raise_for_status()


def _serve(url: str, plants: list[Plant], ticks: int, every: int) -> None:
    rows: list[list[float]] = []
    for tick in range(ticks):
        for plant in plants:
            telemetry, _ = plant.step()
            if tick % every == 0:
                rows += [[r[f] for f in FEATURES] for r in telemetry]
    tensor = {"name": "input", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}
    body = {"inputs": [tensor]}
    httpx.post(f"{url}/v2/models/pm/infer", json=body, timeout=60).raise_for_status()


def drift_to_fleet(
    work: Path, edges: list[str], machines: int, ticks: int
) -> tuple[float, dict[str, Any]]:
    """Seconds from drift injection to the retrained pm serving on every edge."""
    work.mkdir(parents=True, exist_ok=True)
    fleet = LocalFleet(work, {"HYBRIDAI_CLOUD_RETRAINING_TICK_S": "1"})
    try:
        fleet.start_cloud()
        for device in edges:
            fleet.start_edge(device, "plant-a", env={"HYBRIDAI_EDGE_CLOUD_TIMEOUT_S": "15"})
        fleet.wait_enrolled(len(edges))
        feeders = {d: _replay(d, 40 + n, machines) for n, d in enumerate(edges)}
        for device, plant in feeders.items():
            _ingest(fleet.edges[device].url, plant, ticks)
        fleet.wait_drained()
        v1 = fleet.train(pm_training_spec("pm").model_dump())
        wait_for("pm v1 on every edge", lambda: fleet.serving("pm", v1["version"]), 60)
        fleet.call(
            "PUT",
            "/api/v1/models/pm/retraining",
            json={"mode": "auto-to-production", "psi_threshold": 1.0, "min_window": 100},
        )
        replays = {d: [_replay(e, 40 + n, machines) for n, e in enumerate(edges)] for d in edges}
        for device, plants in replays.items():  # a calm window first: what it was trained on
            _serve(fleet.edges[device].url, plants, ticks, every=max(1, ticks // 50))

        injected = time.monotonic()
        for device, plant in feeders.items():
            plant.drift(1.0)
            _ingest(fleet.edges[device].url, plant, 40)
        fleet.wait_drained()
        for device, plants in replays.items():
            for plant in plants:
                plant.drift(1.0)
            _serve(fleet.edges[device].url, plants, 50, every=1)
        wait_for("the retrained pm on every edge", lambda: fleet.serving("pm", "2"), 180)
        elapsed = time.monotonic() - injected
        status = fleet.call("GET", "/api/v1/models/pm/retraining")
        return elapsed, {"edges": len(edges), "trigger": status["last_reason"]}
    finally:
        fleet.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    args = parser.parse_args()
    rounds, runs = (1, 200) if args.quick else (5, 2000)
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        work = Path(tmp)
        lake = Lake(str(work / "lake"))
        fill_lake(lake, machines=12, ticks=300 if args.quick else 600)
        metrics, notes = variant_figures(lake, rounds, runs)
        edges = ["edge-1", "edge-2"] if args.quick else ["edge-1", "edge-2", "edge-3"]
        seconds, drift_notes = drift_to_fleet(work / "fleet", edges, 6, 250)
    metrics["drift_to_fleet_s"] = round(seconds, 2)
    notes["drift"] = drift_notes
    notes["latency"] = {"rounds": rounds, "runs_per_round": runs, "rows_per_call": 1}
    show("bench/lifecycle" + (" (quick)" if args.quick else ""), metrics)
    print(write("lifecycle", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
