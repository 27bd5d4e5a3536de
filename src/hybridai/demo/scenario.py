"""The predictive-maintenance story behind ``hybridai demo``, from empty fleet to summary.

A cloud and three edges start as separate processes; sensors stream into the edges; data syncs
to the lake; the cloud trains v1 and the fleet pulls it; one edge loses its uplink for a while
and keeps serving and buffering; the cloud retrains v2 on more data and rolls it out; every
backlog drains; the summary is computed from what the producers saw, what the edges report
and what the lake holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hybridai.demo.fleet import FleetError, LocalFleet, wait_for
from hybridai.demo.simulator import HORIZON_S, labelled_holdout, pm_training_spec
from hybridai.demo.traffic import Traffic

# Machines with a failure whose run-up the lake's telemetry labels. Training splits by machine
# into train, validation and test, each needing positives: several machines must have failed.
LABELLED_FAILURES = (
    "SELECT count(DISTINCT f.machine_id) FROM failures f WHERE f.ts + "
    f"{HORIZON_S!r} <= (SELECT max(t.ts) FROM telemetry t WHERE t.machine_id = f.machine_id)"
)

EDGES = (
    ("edge-1", "plant-a", "edge-server"),
    ("edge-2", "plant-a", "sensor-gateway"),
    ("edge-3", "plant-b", "ai-pc"),
)
MODEL = "pm"
# Telemetry (low priority) waits up to this long to fill a sync batch: bigger batches cost
# fewer bytes per record on the wire; alerts and failures (high) never wait.
EDGE_ENV = {"HYBRIDAI_EDGE_BATCH_MAX_WAIT_S": "10"}
DemoFailed = FleetError


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 60.0
    seed: int = 7
    outage_s: float | None = None  # default: a fifth of the duration


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def _infer_body(chunk: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(chunk.shape),
                "datatype": "FP32",
                "data": chunk.reshape(-1).tolist(),
            }
        ],
        "outputs": [{"name": "probabilities"}],
    }


class Scenario:
    def __init__(self, options: DemoOptions, workspace: Path, console: Console) -> None:
        self.options = options
        self.console = console
        self.fleet = LocalFleet(workspace)
        self.traffic: Traffic | None = None
        self.phase_times: dict[str, float] = {}

    def start_fleet(self) -> None:
        self.fleet.start_cloud()
        for device, site, kind in EDGES:
            self.fleet.start_edge(device, site, kind, env=EDGE_ENV)
        self.fleet.wait_enrolled(len(EDGES))

    def start_traffic(self) -> Traffic:
        edges = {d: c.url for d, c in self.fleet.edges.items()}
        self.traffic = Traffic(edges, seed=self.options.seed)
        self.traffic.start()
        return self.traffic

    def train(self, deploy: bool = True) -> dict[str, Any]:
        spec = pm_training_spec(MODEL, seed=self.options.seed).model_dump()
        return self.fleet.train({**spec, "deploy": deploy})

    def canary_rollout(self, version: str, on_step: Callable[[str], None]) -> dict[str, Any]:
        """Roll ``version`` out as an operator would: one canary edge, then one edge per step."""
        body = {"model": MODEL, "version": version, "canary_share": 0.34, "step_share": 0.33}
        rollout: dict[str, Any] = self.fleet.call(
            "POST", "/api/v1/rollouts", json={**body, "soak_s": 2, "device_timeout_s": 60}
        )
        path, deadline, shown = f"/api/v1/rollouts/{rollout['rollout_id']}", time.time() + 180, ""
        while rollout["status"] not in ("succeeded", "aborted") and time.time() < deadline:
            line = f"step {rollout['step']}: {len(rollout['updated'])}/{len(rollout['devices'])}"
            if line != shown:
                on_step(f"{line} edges on v{version}")
                shown = line
            time.sleep(0.25)
            rollout = self.fleet.call("GET", path)
        if rollout["status"] != "succeeded":
            raise FleetError(f"the rollout of v{version} {rollout['status']}: {rollout['reason']}")
        return rollout

    def wait_rollout(self, version: str) -> None:
        wait_for(
            f"every edge to serve {MODEL} v{version}",
            lambda: self.fleet.serving(MODEL, version),
            60,
        )

    def outage(self, device: str, seconds: float, on_tick: Callable[[], None]) -> dict[str, Any]:
        link = self.fleet.links[device]
        link.cut()
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < seconds:
            on_tick()
            time.sleep(0.25)
        backlog = self.fleet.edge_status(device)["store"]["backlog_records"]
        link.restore()
        return {"device": device, "seconds": round(seconds, 1), "backlog_at_restore": backlog}

    def quality(self, version: str) -> dict[str, float]:
        """Score the cloud variant of ``version`` on plant data no training run has seen."""
        from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

        features, labels = labelled_holdout(seed=self.options.seed + 99, machines=8, ticks=800)
        probabilities: list[float] = []
        for start in range(0, len(features), 2000):
            result = self.fleet.call(
                "POST",
                f"/v2/models/{MODEL}/versions/{version}/infer",
                json=_infer_body(features[start : start + 2000]),
            )
            out = result["outputs"][0]
            probabilities += np.asarray(out["data"]).reshape(out["shape"])[:, 1].tolist()
        scores = np.asarray(probabilities)
        predicted = (scores >= 0.5).astype(int)
        return {
            "roc_auc": round(float(roc_auc_score(labels, scores)), 4),
            "f1": round(float(f1_score(labels, predicted)), 4),
            "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        }

    def lake_totals(self) -> dict[str, int]:
        count = self.fleet.lake_count
        totals = {}
        for stream in ("telemetry", "failures"):
            totals[f"{stream}_rows"] = count(f"SELECT count(*) FROM {stream}")
            totals[f"{stream}_distinct"] = count(f"SELECT count(DISTINCT record_id) FROM {stream}")
        return totals

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        self.fleet.close()

    # -- the story ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        d = self.options.duration_s
        warmup_s, serve_s, tail_s = 0.3 * d, 0.5 * d, 0.2 * d
        outage_s = self.options.outage_s if self.options.outage_s is not None else 0.2 * d
        steps = 9
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            task = progress.add_task("starting", total=steps, detail="")

            def phase(description: str) -> None:
                self.phase_times[description] = round(time.monotonic() - started, 1)
                progress.update(task, description=description, advance=1)

            def tick() -> None:
                if self.traffic is not None:
                    t = self.traffic.tally
                    progress.update(
                        task,
                        detail=f"{t.records_acked} records, "
                        f"{sum(t.placements.values())} inferences",
                    )

            def hold(seconds: float) -> None:
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    tick()
                    time.sleep(0.25)

            progress.update(task, description="starting cloud and 3 edges")
            self.start_fleet()
            phase("sensors streaming; edges buffering and syncing")
            traffic = self.start_traffic()
            hold(warmup_s)
            wait_for(  # failures sync first (high priority): wait for the telemetry after them
                "failures in the lake to learn from",
                lambda: self.fleet.lake_count(LABELLED_FAILURES) >= 6,
                60,
            )
            phase("cloud training v1 on lake data")
            v1 = self.train()
            phase(f"rolling out v{v1['version']} to the fleet")
            self.wait_rollout(v1["version"])
            traffic.infer_enabled.set()
            phase("edges serving; edge-3 loses its uplink")
            hold(serve_s * 0.3)
            outage = self.outage("edge-3", outage_s, tick)
            phase("uplink restored; edge-3 drains its backlog")
            hold(max(serve_s * 0.7 - outage_s, 2.0))
            phase("cloud retraining v2 on more data")
            v2 = self.train(deploy=False)
            phase(f"canary rollout of v{v2['version']}")
            rollout = self.canary_rollout(
                v2["version"], lambda line: progress.update(task, description=f"rollout {line}")
            )
            self.wait_rollout(v2["version"])
            hold(tail_s)
            phase("draining every backlog")
            traffic.stop()
            self.fleet.wait_drained()
            phase("summary")
            totals = self.lake_totals()
            quality = {"v1": self.quality(v1["version"]), "v2": self.quality(v2["version"])}
            statuses = {dev: self.fleet.edge_status(dev) for dev in self.fleet.edges}
        summary = self._summary(traffic, totals, statuses, outage, v1, v2, quality, started)
        summary["rollout"] = {
            "status": rollout["status"],
            "steps": [
                {
                    "step": step["number"],
                    "devices": step["devices"],
                    "at_s": round(step["started_at"] - rollout["created_at"], 1),
                }
                for step in rollout["steps"]
            ],
        }
        return summary

    def _summary(
        self,
        traffic: Traffic,
        totals: dict[str, int],
        statuses: dict[str, dict[str, Any]],
        outage: dict[str, Any],
        v1: dict[str, Any],
        v2: dict[str, Any],
        quality: dict[str, dict[str, float]],
        started: float,
    ) -> dict[str, Any]:
        t = traffic.tally
        synced = totals["telemetry_distinct"] + totals["failures_distinct"]
        lake_rows = totals["telemetry_rows"] + totals["failures_rows"]
        wire = sum(s["store"]["bytes_synced"] for s in statuses.values())
        latency = {
            p: {"p50_ms": _percentile(v, 50), "p99_ms": _percentile(v, 99), "n": len(v)}
            for p, v in sorted(t.latency_ms.items())
        }
        return {
            "records_ingested": t.records_acked,
            "records_synced": synced,
            "records_lost": t.records_acked - synced,
            "lake_duplicates": lake_rows - synced,
            "records_deduplicated_at_edge": sum(
                s["store"]["records_deduplicated"] for s in statuses.values()
            ),
            "bytes_synced": wire,
            "json_bytes": t.json_bytes,
            "wire_bytes_ratio_vs_json": round(wire / t.json_bytes, 4) if t.json_bytes else None,
            "requests_edge": t.placements.get("edge", 0),
            "requests_cloud": t.placements.get("cloud", 0),
            "requests_degraded": t.degraded,
            "request_errors": dict(t.infer_errors),
            "reasons": dict(t.reasons),
            "latency": latency,
            "model_versions": {
                dev: {m["name"]: m["version"] for m in s["models"]} for dev, s in statuses.items()
            },
            "outage": outage,
            "versions": {
                "v1": {"version": v1["version"], "training_metrics": v1["metrics"]},
                "v2": {"version": v2["version"], "training_metrics": v2["metrics"]},
            },
            "holdout_quality_cloud_variant": quality,
            "phases_s": self.phase_times,
            "wall_s": round(time.monotonic() - started, 1),
        }
