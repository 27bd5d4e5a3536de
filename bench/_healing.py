"""Fault -> alert -> healed, over simulated fleet time, with the cloud's real services.

A cloud store (SQLite, in process) takes status reports every ``HEARTBEAT`` simulated seconds
from simulated edges through ``fleet.record_status``; after each round the alert evaluator and
the healer run as the cloud's loop runs them. The simulated edges obey their desired state as a
real edge does (``device_desired``): a reload order loads a failed model on the next report,
a raised sync drains the backlog at the raised rate, an opened window lets the sync catch up, an
aborted rollout brings the old version back. Their reactions are a model of the edge; the real
ones are tested with real processes in tests/integration/test_healing_processes.py.

Metrics per fault F: ``F.alert_s`` (fault injected -> alert firing) and ``F.healed_s`` (alert
firing -> alert resolved; for a slowed cloud link, which the platform cannot mend, alert firing
-> the device answers at the edge); ``false_alerts_per_hour`` over a steady run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridai.cloud.api.fleet import device_desired
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.devices import device_settings, fleet
from hybridai.cloud.models import registry, rollout
from hybridai.cloud.operations import alerts
from hybridai.cloud.operations.loops import _heal, checks
from hybridai.cloud.settings import CloudSettings
from hybridai.link import pki
from hybridai.protocol.edge_settings import EdgeConfig
from hybridai.protocol.fleet import Capabilities, EnrollRequest, StatusReport
from hybridai.protocol.rollout import RolloutRequest

HEARTBEAT = 10.0  # the target is stated for 10 s reports
DEVICES = ("gw-1", "gw-2", "gw-3")
INGEST_PER_S = 40.0  # records a device produces
CAP_RECORDS_PER_S = 30.0  # what the capped sync moves (bandwidth 3,000 B/s, ~100 B a record)


@dataclass
class SimEdge:
    """A device's traffic and store, and how it obeys its desired state."""

    device_id: str
    rng: np.random.Generator
    faults: set[str] = field(default_factory=set)
    requests: int = 0
    failed: int = 0
    backlog: float = 0.0
    oldest_s: float = 0.0
    uptime: float = 0.0
    reloaded: set[str] = field(default_factory=set)
    at_edge: bool = False  # a healing order keeps its model off the (slow) cloud

    def report(self, cloud: Cloud) -> StatusReport:
        desired = device_desired(cloud, self.device_id)
        settings, orders = desired.settings, desired.settings.healing
        version = desired.models[0].version if desired.models else "1"
        if orders is not None and "model" in self.faults:
            for order in orders.reload.values():
                if order not in self.reloaded:  # the edge loads the model anew
                    self.reloaded.add(order)
                    self.faults.discard("model")
        self.at_edge = orders is not None and orders.placement.get("pm") == "edge"
        self.uptime += HEARTBEAT
        new = 100
        self.requests += new
        bad = "errors" in self.faults and version == "2"
        self.failed += int(self.rng.binomial(new, 0.3 if bad else 0.01))
        window_closed = bool(settings.sync_window) and "window" in self.faults
        rate = 1e9
        if settings.sync_bandwidth_bytes_per_s is not None:
            rate = settings.sync_bandwidth_bytes_per_s / 100.0
        drained = 0.0 if window_closed else rate * HEARTBEAT
        self.backlog = max(0.0, self.backlog + INGEST_PER_S * HEARTBEAT - drained)
        steady = int(self.rng.integers(0, 120))
        backlog = int(self.backlog) + steady
        self.oldest_s = (
            self.oldest_s + HEARTBEAT if window_closed else float(self.rng.uniform(0, 3))
        )
        state = "failed" if "model" in self.faults else "ready"
        # its estimate of a small cloud call (probes keep it fresh while nothing is escalated)
        cloud_ms = float(self.rng.normal(30.0, 2.0)) + (200.0 if "slow_link" in self.faults else 0)
        body: dict[str, Any] = {
            "device_id": self.device_id,
            "agent_version": "sim",
            "uptime_s": self.uptime,
            "models": [{"name": "pm", "version": version, "variant": "edge", "state": state}],
            "store": {
                "backlog_records": backlog,
                "oldest_unsynced_age_s": self.oldest_s,
                "bytes_stored": int(self.rng.uniform(2e8, 3e8)),
                "quota_bytes": int(1e9),
            },
            "inference": {"requests_edge": self.requests, "requests_failed": self.failed},
            "clock_skew_s": 120.0 if "clock" in self.faults else float(self.rng.normal(0, 0.2)),
            "model_health": [
                {"name": "pm", "version": version, "requests": self.requests,
                 "errors": self.failed, "p99_ms": float(self.rng.normal(40.0, 3.0))}
            ],
            "estimates": {"edge_ms.pm": 4.0, "cloud_ms.pm": cloud_ms},
        }  # fmt: skip
        return StatusReport.model_validate(body)


class SimFleet:
    def __init__(self, cloud: Cloud, seed: int) -> None:
        self.cloud = cloud
        rng = np.random.default_rng(seed)
        self.edges = {d: SimEdge(d, np.random.default_rng(rng.integers(1 << 30))) for d in DEVICES}
        self.silent: set[str] = set()
        self.now = 1.0e9  # set by the caller to the certificates' time
        self.fired = 0

    def tick(self) -> None:
        self.now += HEARTBEAT
        reports = [e.report(self.cloud) for d, e in self.edges.items() if d not in self.silent]
        with self.cloud.session() as session:
            for report in reports:
                fleet.record_status(session, report, self.now)
            events = alerts.evaluate(session, checks(self.cloud.settings), self.now)
        self.fired += sum(1 for _, e in events if e == "fired")
        _heal(self.cloud, events, self.now)

    def firing(self, kinds: str, device: str) -> str | None:
        with self.cloud.session() as session:
            for a in alerts.list_alerts(session, "firing"):
                if a.kind in kinds.split(",") and a.subject.device_id == device:
                    return a.alert_id
        return None

    def resolved(self, alert_id: str) -> bool:
        with self.cloud.session() as session:
            return alerts.get_alert(session, alert_id).state == "resolved"


def _cloud(workdir: Path, onnx: bytes, now: float) -> Cloud:
    cloud = open_cloud(
        CloudSettings(
            data_dir=workdir,
            database_url=f"sqlite:///{workdir / 'meta.db'}",
            heartbeat_interval_s=HEARTBEAT,
            rollout_tick_s=3600,
            retraining_tick_s=3600,
            alert_sync_stalled_s=60.0,
        )
    )
    with cloud.session() as session:
        for device in DEVICES:
            token = fleet.create_enrollment_token(session, "north", device, 600, now)
            request = EnrollRequest(
                token=token.token, device_id=device, kind="edge-server",
                capabilities=Capabilities(cores=2, memory_mb=2048), agent_version="sim",
                csr=pki.device_csr(pki.new_key(), device),
            )  # fmt: skip
            fleet.enroll(session, request, now, cloud.device_authority())
        for _ in range(2):
            registry.register_version(session, cloud.blobs, "pm", {"edge": onnx}, {}, {}, "b", now)
        registry.set_deployment(session, "pm", "1", "b", now)
    return cloud


def _onnx() -> bytes:
    """A small tree classifier: the registry needs a real model to register and deploy."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    clf = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, x[:, 0] > 0)
    types = [("input", FloatTensorType([None, 4]))]
    onx = convert_sklearn(clf, initial_types=types, options={id(clf): {"zipmap": False}})
    return bytes(onx.SerializeToString())


FAULTS = ("model", "backlog", "stalled_sync", "bad_rollout", "slow_link", "clock", "silent")
KIND = {
    "model": "model_unhealthy",
    "backlog": "backlog_growth",
    "stalled_sync": "sync_stopped,backlog_growth",  # whichever comes first
    "bad_rollout": "error_rate",
    "slow_link": "cloud_link_slow",
    "clock": "clock_skew",
    "silent": "device_silent",
}
HEALS = {"model", "backlog", "stalled_sync", "bad_rollout", "slow_link"}  # the others need a person


def _inject(sim: SimFleet, fault: str) -> None:
    edge = sim.edges["gw-2"]
    if fault == "model":
        edge.faults.add("model")
    elif fault in ("backlog", "stalled_sync"):
        config = (
            EdgeConfig(sync_bandwidth_bytes_per_s=CAP_RECORDS_PER_S * 100)
            if fault == "backlog"
            else EdgeConfig(sync_window="03:00-04:00")
        )
        with sim.cloud.session() as session:
            device_settings.set_level(session, "device", "gw-2", config, "bench", sim.now)
        if fault == "stalled_sync":
            edge.faults.add("window")
    elif fault == "bad_rollout":
        with sim.cloud.session() as session:
            request = RolloutRequest(model="pm", version="2", canary_share=1.0, soak_s=36000)
            rollout.start(session, request, "bench", sim.now)
        edge.faults.add("errors")
    elif fault in ("clock", "slow_link"):
        edge.faults.add(fault)
    elif fault == "silent":
        sim.silent.add("gw-2")


def run_fault(fault: str, onnx: bytes, now: float, seed: int) -> tuple[float, float | None]:
    with tempfile.TemporaryDirectory() as tmp:
        cloud = _cloud(Path(tmp), onnx, now)
        try:
            sim = SimFleet(cloud, seed)
            sim.now = now
            for _ in range(40):  # the detectors' history
                sim.tick()
            start = sim.now
            _inject(sim, fault)
            alert_id = None
            for _ in range(30):
                sim.tick()
                alert_id = sim.firing(KIND[fault], "gw-2")
                if alert_id:
                    break
            if alert_id is None:
                return float("inf"), None
            fired = sim.now
            if fault not in HEALS:
                return fired - start, None
            for _ in range(30):
                sim.tick()
                if fault == "slow_link" and sim.edges["gw-2"].at_edge:
                    return fired - start, sim.now - fired  # the link stays slow
                if sim.resolved(alert_id):
                    return fired - start, sim.now - fired
            return fired - start, float("inf")
        finally:
            cloud.close()


def steady(onnx: bytes, now: float, minutes: float, seed: int) -> float:
    """Alerts fired per hour of a fleet with no fault (after the detectors' warm-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        cloud = _cloud(Path(tmp), onnx, now)
        try:
            sim = SimFleet(cloud, seed)
            sim.now = now
            for _ in range(40):
                sim.tick()
            sim.fired = 0
            rounds = int(minutes * 60 / HEARTBEAT)
            for _ in range(rounds):
                sim.tick()
            return sim.fired / (rounds * HEARTBEAT / 3600.0)
        finally:
            cloud.close()


def healing_part(quick: bool) -> tuple[dict[str, float], dict[str, Any]]:
    import time

    onnx = _onnx()
    now = float(int(time.time()))
    metrics: dict[str, float] = {}
    missed: list[str] = []  # no alert, or not healed, within 30 reports (JSON has no inf)
    for fault in FAULTS:
        alert_s, healed_s = run_fault(fault, onnx, now, seed=7)
        for name, value in ((f"{fault}.alert_s", alert_s), (f"{fault}.healed_s", healed_s)):
            if value is None:
                continue
            if value == float("inf"):
                missed.append(name)
            else:
                metrics[name] = value
    minutes = 10.0 if quick else 60.0
    metrics["false_alerts_per_hour"] = round(steady(onnx, now, minutes, seed=11), 2)
    notes = {
        "heartbeat_s": HEARTBEAT,
        "missed": missed,
        "steady_minutes": minutes,
        "devices": len(DEVICES),
        "alert_only": sorted(set(FAULTS) - HEALS),
        "time": "simulated fleet time; the edges' reactions to orders are modelled",
        "stalled_sync": "a sync window closed by mistake: the backlog alert comes first; the "
        "overlay opens the window and stays half an hour after the backlog drained (hold_s), so "
        "the two alerts no longer take turns; healed = the alert resolved",
    }
    return metrics, notes
