"""Plays a use case on a real local fleet, from empty lake to measured cascade.

Policies are declared before the case's edges start, so their first desired state carries
them; the sites' records go in over the edges' ingest API and reach the lake only through
sync (and so through the data policy); the cloud trains both models with the platform's own
pipeline (``POST /api/v1/training-runs``, what ``hybridai model train`` calls), calibrates the
cascade at the case's cloud share and deploys it; field requests go to the edges one row at a
time, as a branch or a collector sends them; one retraining round adds the escalated hard
examples, labelled with what happened to them. Quality is measured offline on a holdout with
the registry's own ONNX artifacts (the same bytes the fleet serves) and the calibrated rule
the edges apply, which the live answers are checked against.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort

from hybridai.demo.fleet import FleetError, LocalFleet, wait_for
from hybridai.demo.scenarios.base import Array, Holdout, Records, UseCase
from hybridai.orchestrator import CascadeRule, Measure

EDGE_ENV = {"HYBRIDAI_EDGE_SYNC_INTERVAL_S": "1", "HYBRIDAI_EDGE_CLOUD_TIMEOUT_S": "15"}
INGEST_BATCH = 2_000
LIVE_THREADS = 2


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _scores(artifact: bytes, x: Array) -> Array:
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, {"input": x})
    return np.asarray(probabilities)


class Run:
    """One use case on ``fleet``; ``play`` returns its summary (plain JSON data)."""

    def __init__(
        self,
        fleet: LocalFleet,
        case: UseCase,
        size: str = "quick",
        seed: int = 7,
        on_phase: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.fleet = fleet
        self.case = case
        self.sizes = case.sizes[size]
        self.seed = seed
        self.on_phase = on_phase
        self.raw_bytes = 0
        self.escalated_bytes = 0
        self.phases: dict[str, float] = {}
        self._started = time.monotonic()

    def _phase(self, what: str) -> None:
        self.phases[what] = round(time.monotonic() - self._started, 1)
        self.on_phase(what)

    # -- steps ------------------------------------------------------------------------------

    def start_sites(self) -> None:
        for stream, spec in self.case.policies().items():
            self.fleet.call("PUT", f"/api/v1/policies/{stream}", json=spec)
        for site in self.case.sites:
            if site.device not in self.fleet.edges:
                self.fleet.start_edge(site.device, site.site, site.kind, env=EDGE_ENV)

    def ingest(self) -> dict[str, int]:
        """Every site's records through its edge; returns records acknowledged per stream."""
        acked: dict[str, int] = {}
        with httpx.Client(timeout=60) as http:
            for n, site in enumerate(self.case.sites):
                records: Records = self.case.records(
                    self.seed * 100 + n, self.sizes.train_units, site
                )
                url = self.fleet.edges[site.device].url
                for stream, rows in records.items():
                    for start in range(0, len(rows), INGEST_BATCH):
                        body = json.dumps({"records": rows[start : start + INGEST_BATCH]}).encode()
                        self.raw_bytes += len(body)
                        response = http.post(
                            f"{url}/api/v1/streams/{stream}/records",
                            content=body,
                            headers={"Content-Type": "application/json"},
                        )
                        if response.status_code != 200:
                            raise FleetError(f"{site.device} refused {stream}: {response.text}")
                        acked[stream] = acked.get(stream, 0) + len(
                            rows[start : start + INGEST_BATCH]
                        )
        return acked

    def wait_lake(self, acked: dict[str, int], timeout_s: float = 120) -> None:
        def synced(stream: str, n: int) -> Callable[[], bool]:
            sql = f"SELECT count(DISTINCT record_id) FROM {stream}"
            return lambda: self.fleet.lake_count(sql) >= n

        for stream, n in acked.items():
            wait_for(f"{n} {stream} records in the lake", synced(stream, n), timeout_s)

    def label_outcomes(self, escalated: Array, truth: Array) -> None:
        """Label each escalated request with what happened, through the hard-examples API.

        A chargeback, a failure or an incident ticket tells the people who learn it.
        """
        labels = [
            {"request_id": f"{self.case.name}-{i}", "row": 0, "label": int(truth[i])}
            for i in np.flatnonzero(escalated)
        ]
        self.fleet.call(
            "POST",
            f"/api/v1/models/{self.case.model}/hard-examples/labels",
            json={"labels": labels},
        )

    def train(self, hard_examples: bool = False) -> dict[str, Any]:
        spec = {**self.case.training_spec(self.seed), "deploy": False}
        if hard_examples:  # people's labels where given, else the cloud model's answer
            spec["hard_examples"] = {"label_source": "human-else-cloud"}
        return self.fleet.train(spec)

    def deploy(self, version: str) -> dict[str, Any]:
        model = self.case.model
        calibrated: dict[str, Any] = self.fleet.call(
            "POST",
            f"/api/v1/models/{model}/versions/{version}/calibration",
            json={"target_cloud_share": self.case.target_cloud_share, "measure": "margin"},
        )
        self.fleet.call(
            "PUT",
            f"/api/v1/deployments/{model}",
            json={"name": model, "version": version, "policy": self.case.placement()},
        )
        devices = [s.device for s in self.case.sites]

        def serving() -> bool:
            for device in devices:
                models = {m["name"]: m for m in self.fleet.edge_status(device)["models"]}
                m = models.get(model)
                if not m or m["version"] != version or m["state"] != "ready":
                    return False
            return True

        wait_for(f"the sites to serve {model} v{version}", serving, 90)
        return calibrated

    def artifact(self, version: str, variant: str) -> bytes:
        assert self.fleet.api is not None
        path = f"/api/v1/models/{self.case.model}/versions/{version}/artifacts/{variant}"
        response = self.fleet.api.get(path)
        if response.status_code != 200:
            raise FleetError(f"GET {path}: HTTP {response.status_code}")
        return response.content

    def field_requests(self, x: Array) -> dict[str, Any]:
        """Single-row requests to the sites' edges, spread over them, ``LIVE_THREADS`` at once."""
        urls = [self.fleet.edges[s.device].url for s in self.case.sites]
        local = threading.local()
        lock = threading.Lock()

        def ask(i: int) -> tuple[bool, bool, float, float, str]:
            if not hasattr(local, "http"):
                local.http = httpx.Client(timeout=30)
            body = json.dumps(
                {
                    "id": f"{self.case.name}-{i}",
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, x.shape[1]],
                            "datatype": "FP32",
                            "data": x[i].tolist(),
                        }
                    ],
                }
            ).encode()
            started = time.perf_counter()
            response = local.http.post(
                f"{urls[i % len(urls)]}/v2/models/{self.case.model}/infer",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise FleetError(f"field request {i}: HTTP {response.status_code}: {response.text}")
            answer = response.json()
            parameters = answer.get("parameters") or {}
            escalated = bool(parameters.get("escalated"))
            with lock:
                self.raw_bytes += len(body)
                if escalated:
                    self.escalated_bytes += len(body)
            outputs = {o["name"]: o for o in answer["outputs"]}
            p = float(outputs["probabilities"]["data"][1])
            how = str(parameters.get("deferral", "threshold"))
            if parameters.get("escalation_failed"):
                how = "escalation failed"
            return escalated, bool(parameters.get("degraded")), ms, p, how

        with ThreadPoolExecutor(LIVE_THREADS) as pool:
            answers = list(pool.map(ask, range(len(x))))
        escalated = np.asarray([a[0] for a in answers])
        edge_ms = [a[2] for a in answers if not a[0]]
        return {
            "escalated": escalated,
            "degraded": int(sum(a[1] for a in answers)),
            "edge_ms": edge_ms,
            "cloud_ms": [a[2] for a in answers if a[0]],
            "scores": np.asarray([a[3] for a in answers]),
            "decided_by": dict(Counter(a[4] for a in answers)),
        }

    def wire_bytes(self) -> int:
        synced = sum(
            self.fleet.edge_status(s.device)["store"]["bytes_synced"] for s in self.case.sites
        )
        return int(synced) + self.escalated_bytes

    def lake_checks(self, records: Records) -> dict[str, int]:
        out = {}
        for what, sql in self.case.lake_checks(records).items():
            result = self.fleet.call("POST", "/api/v1/lake/query", json={"sql": sql})
            out[what] = int(result["rows"][0][0])
        return out

    def analytics(self) -> dict[str, Any]:
        out = {}
        for what, sql in self.case.analytics().items():
            result = self.fleet.call("POST", "/api/v1/lake/query", json={"sql": sql})
            out[what] = {"columns": result["columns"], "rows": result["rows"]}
        return out

    # -- the story --------------------------------------------------------------------------

    def play(self) -> dict[str, Any]:
        case, sizes = self.case, self.sizes
        self._phase(f"starting {len(case.sites)} edge(s) with the data policy")
        self.start_sites()
        self._phase("sites streaming their records to the edges")
        acked = self.ingest()
        self._phase("edges syncing to the lake")
        self.wait_lake(acked)
        self._phase("cloud training edge and cloud models on lake data")
        v1 = self.train()
        self._phase(f"calibrating the cascade at {case.target_cloud_share:.0%} and deploying")
        calibrated = self.deploy(v1["version"])
        holdout: Holdout = case.holdout(self.seed + 1000, sizes.holdout_units)
        # Field traffic: other rows of the same generator, so what retraining learns from
        # the escalations is never what it is judged on.
        field = case.holdout(self.seed + 2000, sizes.holdout_units)
        pick = np.random.default_rng(self.seed).permutation(len(field.y))[: sizes.live_requests]
        live_rows, live_truth = field.x[pick], field.y[pick]
        self._phase(f"{len(pick)} field requests to the edges")
        live = self.field_requests(live_rows)
        edge_artifact = self.artifact(v1["version"], "edge")
        edge_p = _scores(edge_artifact, holdout.x)
        cloud_p = _scores(self.artifact(v1["version"], "cloud"), holdout.x)
        rule = CascadeRule(Measure(calibrated.get("measure", "margin")))
        threshold = float(calibrated["threshold"])
        escalate = rule.confidences(edge_p) < threshold
        cascade_p = np.where(escalate[:, None], cloud_p, edge_p)
        field_escalate = rule.confidences(_scores(edge_artifact, live_rows)) < threshold
        agreement = float((field_escalate == live["escalated"]).mean())
        quality = {
            "edge": case.quality(holdout, edge_p[:, 1]),
            "cloud": case.quality(holdout, cloud_p[:, 1]),
            "cascade": case.quality(holdout, cascade_p[:, 1]),
        }
        self._phase("hard examples reaching the lake; labelled by outcome; retraining")
        escalations = int(live["escalated"].sum())
        sql = f"SELECT count(*) FROM hard_examples WHERE model = '{case.model}'"
        if escalations:
            wait_for(
                "the hard examples in the lake",
                lambda: self.fleet.lake_count(sql) >= escalations,
                90,
            )
            self.label_outcomes(live["escalated"], live_truth)
        v2 = self.train(hard_examples=True)
        edge_after = case.quality(
            holdout, _scores(self.artifact(v2["version"], "edge"), holdout.x)[:, 1]
        )
        self._phase("draining every backlog; cloud analytics")
        wait_for(
            "the sites to drain their backlogs",
            lambda: all(
                self.fleet.edge_status(s.device)["store"]["backlog_records"] == 0
                for s in case.sites
            ),
            90,
        )
        wire = self.wire_bytes()
        return {
            "scenario": case.name,
            "title": case.title,
            "model": case.model,
            "sites": [s.device for s in case.sites],
            "records_ingested": acked,
            "metric": quality["edge"].metric,
            "edge_quality": round(quality["edge"].value, 4),
            "cloud_quality": round(quality["cloud"].value, 4),
            "cascade_quality": round(quality["cascade"].value, 4),
            "details": {
                k: {m: round(v, 4) for m, v in q.details.items()} for k, q in quality.items()
            },
            "cloud_share": round(float(escalate.mean()), 4),
            "live_cloud_share": round(float(live["escalated"].mean()), 4),
            "live_agreement": round(agreement, 4),
            "live_degraded": live["degraded"],
            "live_decided_by": live["decided_by"],  # threshold, a learned router, or failed
            "calibrated_threshold": round(threshold, 6),
            "edge_p50_ms": _percentile(live["edge_ms"], 50),
            "edge_p99_ms": _percentile(live["edge_ms"], 99),
            "escalated_p50_ms": _percentile(live["cloud_ms"], 50),
            "edge_budget_ms": case.edge_budget_ms,
            "wire_bytes": wire,
            "raw_bytes": self.raw_bytes,
            "wire_ratio": round(wire / self.raw_bytes, 4) if self.raw_bytes else None,
            "retraining": {
                "v1": v1["version"],
                "v2": v2["version"],
                "hard_examples": escalations,
                "lineage": self.fleet.call(
                    "GET", f"/api/v1/models/{case.model}/versions/{v2['version']}"
                )["lineage"].get("hard_examples"),
                "edge_quality_before": round(quality["edge"].value, 4),
                "edge_quality_after": round(edge_after.value, 4),
            },
            "training_metrics": {
                "edge": v1["metrics"].get("edge"),
                "cloud": v1["metrics"].get("cloud"),
            },
            "lake_checks": self.lake_checks({}),
            "analytics": self.analytics(),
            "holdout_rows": len(holdout.y),
            "phases_s": self.phases,
            "wall_s": round(time.monotonic() - self._started, 1),
        }
