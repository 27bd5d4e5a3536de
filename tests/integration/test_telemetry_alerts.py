"""Telemetry series and alerts over a synthetic fleet, on SQLite and PostgreSQL.

Devices enroll over the real routes; their reports go through the service the status route
calls (``fleet.record_status``) with a simulated clock, and the evaluator runs as the cloud's
loop runs it (``alerts.evaluate``), one round per heartbeat. The API and CLI are checked over
the real app. A steady fleet raises nothing; each injected fault raises its alert kind within
a few reports; duplicates merge, flapping is suppressed, silence alerts, alerts resolve.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests._telemetry import FakeEdge
from typer.testing import CliRunner

from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.devices import fleet
from hybridai.cloud.operations import alerts, telemetry
from hybridai.cloud.operations.loops import checks, retention
from hybridai.cloud.settings import CloudSettings
from hybridai.link import pki
from hybridai.observability.alerting import Event
from hybridai.protocol.alerts import Alert
from hybridai.storage.tables import TelemetryPointRow

HEARTBEAT = 5.0
T0 = float(int(time.time()))  # the certificates are issued now
DEVICES = ("gw-1", "gw-2", "gw-3")


@pytest.fixture
def cloud(metadata_url: str, tmp_path: Path) -> Iterator[Cloud]:
    settings = CloudSettings(
        data_dir=tmp_path / "cloud",
        database_url=metadata_url,
        rollout_tick_s=3600,
        retraining_tick_s=3600,
        alert_eval_s=3600,
        telemetry_compact_s=3600,
        heartbeat_interval_s=HEARTBEAT,
    )
    opened = open_cloud(settings)
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    admin = cloud.settings.admin_token_path.read_text().strip()
    with TestClient(create_app(cloud), headers={"Authorization": f"Bearer {admin}"}) as client:
        for device in DEVICES:
            token = client.post(
                "/api/v1/enrollment-tokens", json={"site": "north", "device_id": device}
            )
            assert token.status_code == 201, token.text
            body = {
                "token": token.json()["token"],
                "device_id": device,
                "kind": "edge-server",
                "capabilities": {"cores": 4, "memory_mb": 2048},
                "agent_version": "t",
                "csr": pki.device_csr(pki.new_key(), device),
            }
            assert client.post("/api/v1/enroll", json=body).status_code == 200
        yield client


class Fleet:
    """The synthetic fleet and the clock: one ``tick`` is one heartbeat of every device."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.edges = {d: FakeEdge(d, seed=i) for i, d in enumerate(DEVICES)}
        self.now = T0
        self.events: list[tuple[Alert, Event]] = []
        self.silent: set[str] = set()

    def tick(self, rounds: int = 1) -> list[tuple[Alert, Event]]:
        new: list[tuple[Alert, Event]] = []
        for _ in range(rounds):
            self.now += HEARTBEAT
            with self.cloud.session() as session:
                for device, edge in self.edges.items():
                    if device not in self.silent:
                        fleet.record_status(session, edge.report(HEARTBEAT), self.now)
                new += alerts.evaluate(session, checks(self.cloud.settings), self.now)
        self.events += new
        return new

    def alerts(self, state: str | None = None) -> list[Alert]:
        with self.cloud.session() as session:
            return alerts.list_alerts(session, state)  # type: ignore[arg-type]


@pytest.fixture
def synthetic(cloud: Cloud, api: TestClient) -> Fleet:
    steady = Fleet(cloud)
    steady.tick(40)  # warm-up: the detectors' history
    return steady


def test_a_steady_fleet_raises_no_alert(synthetic: Fleet) -> None:
    synthetic.tick(120)  # 10 minutes of simulated fleet time
    assert synthetic.events == [], [a.summary for a, _ in synthetic.events]


FAULTS = [
    ("latency", "latency", "pm"),
    ("errors", "error_rate", "both"),
    ("backlog", "backlog_growth", None),
    ("escalations", "escalation_rate", "pm"),
    ("drift", "drift", "pm"),
    ("disk", "disk_quota", None),
    ("clock", "clock_skew", None),
    ("model", "model_unhealthy", None),
]


@pytest.mark.parametrize(("fault", "kind", "model"), FAULTS)
def test_each_fault_raises_its_alert_then_resolves(
    synthetic: Fleet, fault: str, kind: str, model: str | None
) -> None:
    synthetic.edges["gw-2"].faults.add(fault)
    reports = 0
    while not synthetic.alerts("firing") and reports < 4:
        synthetic.tick()
        reports += 1
    synthetic.tick()  # the device-wide and the per-model series may need the same report
    firing = synthetic.alerts("firing")
    assert reports <= 3, f"{kind}: no alert after {reports} reports"
    # the device's error rate and its model's both rise
    models = {None, "pm"} if model == "both" else {model}
    assert sorted((a.kind, a.subject.device_id, a.subject.model or "") for a in firing) == sorted(
        (kind, "gw-2", m or "") for m in models
    ), firing
    alert = firing[0]
    assert alert.subject.site == "north"
    assert alert.evidence["detector"] == alert.detector and "baseline" in alert.evidence
    synthetic.tick(3)  # still wrong: merged, not repeated
    again = synthetic.alerts()
    assert len(again) == len(models) and all(a.state == "firing" for a in again)
    assert all(a.occurrences >= 4 for a in again)
    fired = [e for a, e in synthetic.events if e == "fired"]
    assert fired == ["fired"] * len(models)
    synthetic.edges["gw-2"].faults.clear()
    synthetic.edges["gw-2"].backlog = 0
    synthetic.tick(5)
    done = synthetic.alerts()
    assert {(a.kind, a.state) for a in done} == {(kind, "resolved")}, done
    assert all(a.ended_at is not None and a.ended_at > a.started_at for a in done)
    synthetic.tick(10)
    assert synthetic.alerts("firing") == []  # and it stays resolved


def test_flapping_is_reopened_then_suppressed_not_repeated(synthetic: Fleet) -> None:
    edge = synthetic.edges["gw-1"]
    for _ in range(5):
        edge.faults.add("clock")
        synthetic.tick(2)
        edge.faults.clear()
        synthetic.tick(3)
    edge.faults.add("clock")
    synthetic.tick(2)
    everything = synthetic.alerts()
    assert len(everything) == 1, everything
    alert = everything[0]
    assert alert.state == "suppressed" and alert.evidence["flaps"] >= 3
    told = [e for _, e in synthetic.events]
    assert told.count("fired") == 1 and told.count("suppressed") >= 1
    assert told.count("reopened") == 2  # then suppressed: not announced any more


def test_a_single_blip_raises_nothing(synthetic: Fleet) -> None:
    edge = synthetic.edges["gw-3"]
    edge.faults.add("latency")
    synthetic.tick()
    edge.faults.clear()
    synthetic.tick(6)
    assert synthetic.alerts() == []


def test_a_silent_device_alerts_then_resolves_when_it_reports(synthetic: Fleet) -> None:
    synthetic.silent.add("gw-3")
    synthetic.tick(2)
    assert synthetic.alerts() == []  # 2.5 heartbeats is the limit: not over it yet
    synthetic.tick()
    firing = synthetic.alerts("firing")
    assert [(a.kind, a.subject.device_id, a.severity) for a in firing] == [
        ("device_silent", "gw-3", "critical")
    ]
    synthetic.tick(2)
    assert synthetic.alerts("firing")[0].occurrences == 3
    synthetic.silent.clear()
    synthetic.tick()
    assert [a.state for a in synthetic.alerts()] == ["resolved"]


def test_a_certificate_near_its_end_alerts(synthetic: Fleet) -> None:
    lifetime = synthetic.cloud.settings.device_cert_lifetime_s
    synthetic.now += 0.9 * lifetime  # the devices stopped renewing (and reporting)
    synthetic.silent.update(DEVICES)
    synthetic.tick()
    kinds = sorted((a.kind, a.subject.device_id) for a in synthetic.alerts("firing"))
    assert ("certificate_expiry", "gw-1") in kinds and len(kinds) == 2 * len(DEVICES)


def test_telemetry_api_raw_and_downsampled(synthetic: Fleet, api: TestClient) -> None:
    cloud = synthetic.cloud
    with cloud.session() as session:
        raw_before = session.scalar(select(func.count()).select_from(TelemetryPointRow))
        telemetry.compact(session, synthetic.now + 120, retention(cloud.settings))
        assert telemetry.compact(session, synthetic.now + 120, retention(cloud.settings)) == 0
    since, until = str(T0), str(synthetic.now + 1)
    raw = api.get(
        "/api/v1/telemetry",
        params={"device": "gw-1", "metric": "backlog_records", "since": since, "until": until},
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["step"] == 0 and len(raw.json()["points"]) == 40
    minute = api.get(
        "/api/v1/telemetry",
        params={
            "device": "gw-1", "metric": "latency_p99_ms", "model": "pm",
            "since": since, "until": until, "step": 60,
        },
    ).json()  # fmt: skip
    points = minute["points"]
    assert minute["step"] == 60 and sum(p["count"] for p in points) == 40
    assert all(p["min"] <= p["mean"] <= p["max"] for p in points)
    assert all(p["ts"] % 60 == 0 for p in points) and len(points) in (4, 5)  # 195 s of points
    with cloud.session() as session:  # the hour is complete
        telemetry.compact(session, synthetic.now + 7200, retention(cloud.settings))
    hourly = api.get(
        "/api/v1/telemetry",
        params={"device": "gw-1", "metric": "latency_p99_ms", "model": "pm", "since": since,
                "until": until, "step": 3600},
    ).json()  # fmt: skip
    assert sum(p["count"] for p in hourly["points"]) == 40
    # Raw points past their retention go; the buckets stay
    with cloud.session() as session:
        telemetry.compact(session, synthetic.now + 2 * 86400, retention(cloud.settings))
        left = session.scalar(select(func.count()).select_from(TelemetryPointRow))
    assert raw_before is not None and left is not None and 0 < left < raw_before
    assert (
        api.get(
            "/api/v1/telemetry",
            params={"device": "gw-1", "metric": "backlog_records", "since": since, "until": until},
        ).json()["points"]
        == []
    )


@pytest.mark.parametrize(
    ("params", "code", "says"),
    [
        ({"device": "gw-1", "metric": "nope"}, "bad_request", "unknown metric"),
        ({"device": "gw-1", "metric": "uptime_s", "since": "yesterday"}, "bad_request", "since"),
        ({"device": "gw-1", "metric": "uptime_s", "since": "1h", "until": "2h"}, "bad_request",
         "swap"),
        ({"device": "gw-1", "metric": "uptime_s", "since": "30d", "step": 0}, "query_limit",
         "larger step"),
    ],
)  # fmt: skip
def test_telemetry_api_refuses_bad_queries_clearly(
    api: TestClient, params: dict[str, Any], code: str, says: str, cloud: Cloud
) -> None:
    if code == "query_limit":
        with cloud.session() as session:
            for i in range(telemetry.MAX_POINTS + 1):
                session.add(
                    TelemetryPointRow(device_id="gw-1", metric="uptime_s", model="", step=0,
                                      ts=T0 + i, count=1, total=1.0, low=1.0, high=1.0)
                )  # fmt: skip
        params = {**params, "since": str(T0), "until": str(T0 + 10**6)}
    answer = api.get("/api/v1/telemetry", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == code and says in answer.json()["error"]


def test_alerts_api_lists_shows_and_acks(synthetic: Fleet, api: TestClient) -> None:
    synthetic.edges["gw-1"].faults.add("disk")
    synthetic.tick(3)
    firing = api.get("/api/v1/alerts", params={"state": "firing"})
    assert firing.status_code == 200 and [a["kind"] for a in firing.json()] == ["disk_quota"]
    alert_id = firing.json()[0]["alert_id"]
    assert api.get("/api/v1/alerts", params={"state": "resolved"}).json() == []
    shown = api.get(f"/api/v1/alerts/{alert_id}").json()
    assert shown["evidence"]["value"] > 0.9 and shown["acked_at"] is None
    acked = api.post(f"/api/v1/alerts/{alert_id}/ack")
    assert acked.status_code == 200 and acked.json()["acked_by"] and acked.json()["acked_at"]
    assert acked.json()["state"] == "firing"
    missing = api.post("/api/v1/alerts/nope/ack")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert "hybridai alerts list" in missing.json()["error"]
    bad = api.get("/api/v1/alerts", params={"state": "burning"})
    assert bad.status_code in (400, 422)


def test_a_real_report_feeds_the_series_and_the_per_report_checks(
    cloud: Cloud, api: TestClient
) -> None:
    edge = FakeEdge("gw-1", seed=9, faults={"clock"})
    for _ in range(2):
        body = json.loads(edge.report().model_dump_json())
        assert api.post("/api/v1/devices/gw-1/status", json=body).status_code == 204
    skew = api.get("/api/v1/telemetry", params={"device": "gw-1", "metric": "clock_skew_s"})
    assert [p["mean"] for p in skew.json()["points"]] == [120.0, 120.0]
    rate = api.get("/api/v1/telemetry", params={"device": "gw-1", "metric": "error_rate"})
    assert len(rate.json()["points"]) == 1  # a rate needs two reports
    firing = api.get("/api/v1/alerts", params={"state": "firing"}).json()
    assert [a["kind"] for a in firing] == ["clock_skew"]


@pytest.fixture
def cli_on(
    api: TestClient, cloud: Cloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> CliRunner:
    """The CLI talking to the in-process app as the admin (httpx transport swapped)."""
    admin = cloud.settings.admin_token_path.read_text().strip()

    @contextlib.contextmanager
    def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[TestClient]:
        api.headers.clear()  # the app stays up: the CLI's `with` must not close it
        if token:
            api.headers["Authorization"] = f"Bearer {token}"
        yield api

    monkeypatch.setattr(_api, "client", in_process)
    monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HYBRIDAI_TOKEN", admin)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_the_cli_shows_telemetry_and_lists_shows_acks_alerts(
    synthetic: Fleet, cli_on: CliRunner
) -> None:
    synthetic.edges["gw-2"].faults.add("clock")
    synthetic.tick(2)
    wide = {"COLUMNS": "250"}
    span = ["--since", str(T0), "--until", str(synthetic.now + 1)]  # the simulated clock
    series = cli_on.invoke(cli, ["fleet", "telemetry", "gw-2", "clock_skew_s", *span])
    assert series.exit_code == 0, series.output
    assert "clock_skew_s of gw-2 (raw)" in series.output and "120" in series.output
    as_json = cli_on.invoke(cli, ["fleet", "telemetry", "gw-2", "clock_skew_s", *span, "--json"])
    assert len(json.loads(as_json.output)["points"]) == 42
    bad = cli_on.invoke(cli, ["fleet", "telemetry", "gw-2", "nope"])
    assert bad.exit_code == 1 and "unknown metric" in bad.output
    listed = cli_on.invoke(cli, ["alerts", "list", "--state", "firing"], env=wide)
    assert listed.exit_code == 0 and "clock_skew" in listed.output and "gw-2" in listed.output
    alert_id = json.loads(cli_on.invoke(cli, ["alerts", "list", "--json"]).output)[0]["alert_id"]
    shown = cli_on.invoke(cli, ["alerts", "show", alert_id[:12]], env=wide)
    assert shown.exit_code == 0 and "detector threshold" in shown.output, shown.output
    acked = cli_on.invoke(cli, ["alerts", "ack", alert_id[:12]])
    assert acked.exit_code == 0 and f"acknowledged {alert_id}" in acked.output
    assert "(acked)" in cli_on.invoke(cli, ["alerts", "list"], env=wide).output
    missing = cli_on.invoke(cli, ["alerts", "ack", "nope"])
    assert missing.exit_code == 1 and "hybridai alerts list" in missing.output
