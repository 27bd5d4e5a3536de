"""Operations with real processes: the cloud's /metrics after traffic, one trace id per request
from edge to cloud in the JSON logs, and no record value in any log line (issue 12.1, 12.3).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _fleet import cloud_client, ingest, local_fleet
from _models import train_classifier_onnx
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow
JSON_LOGS = {"HYBRIDAI_LOG_FORMAT": "json", "HYBRIDAI_LOG_LEVEL": "debug"}
SECRET_TEXT = "zq-canary-5d41402abc"  # a record value no log line may carry
SECRET_NUMBER = 31337.625
ROWS = [[SECRET_NUMBER, -1.2, 0.3, 2.0], [1.0, 0.5, -0.7, 0.0]]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    workspace: Path = tmp_path_factory.mktemp("observability")
    with local_fleet(workspace, {"HYBRIDAI_LOG_FORMAT": "json"}) as fleet:
        fleet.start_edge("obs-1", "plant-o", "edge-server", env=JSON_LOGS)
        fleet.wait_enrolled(1)
        yield fleet


def scrape(fleet: LocalFleet) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the cloud's /metrics: (name, sorted labels) -> value."""
    assert fleet.api is not None
    response = fleet.api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_read_action(fleet: LocalFleet) -> None:
    with cloud_client(fleet) as anonymous:
        response = anonymous.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_a_404_counts_under_its_route_template_not_its_path(fleet: LocalFleet) -> None:
    assert fleet.api is not None
    route = "/api/v1/devices/{device_id}"
    before = value(
        scrape(fleet), "hybridai_cloud_http_requests_total", method="GET", route=route, status="404"
    )
    for device in ("nobody-1", "nobody-2", "nobody-3"):
        assert fleet.api.get(f"/api/v1/devices/{device}").status_code == 404
    after = scrape(fleet)
    assert (
        value(after, "hybridai_cloud_http_requests_total", method="GET", route=route, status="404")
        == before + 3
    )
    assert not any("nobody-" in str(labels) for _, labels in after)  # raw paths never a label
    latency = value(
        after, "hybridai_cloud_http_request_duration_seconds_count", method="GET", route=route
    )
    assert latency >= 3
    assert fleet.api.get("/no/such/path").status_code == 404
    unmatched = value(
        scrape(fleet),
        "hybridai_cloud_http_requests_total",
        method="GET",
        route="unmatched",
        status="404",
    )
    assert unmatched >= 1


def test_a_sync_batch_moves_commits_rows_and_bytes(fleet: LocalFleet) -> None:
    before = scrape(fleet)
    records = [
        {"machine_id": SECRET_TEXT, "ts": time.time() - i, "vibration": SECRET_NUMBER + i}
        for i in range(7)
    ]
    response = ingest(fleet.edges["obs-1"].url, "telemetry", records)
    assert response.status_code == 200, response.text
    fleet.wait_drained()
    after = scrape(fleet)
    rows = value(after, "hybridai_cloud_sync_rows_total") - value(
        before, "hybridai_cloud_sync_rows_total"
    )
    commits = value(after, "hybridai_cloud_sync_commits_total", outcome="committed") - value(
        before, "hybridai_cloud_sync_commits_total", outcome="committed"
    )
    assert rows == 7
    assert commits >= 1
    assert value(after, "hybridai_cloud_sync_bytes_total") > value(
        before, "hybridai_cloud_sync_bytes_total"
    )
    assert value(after, "hybridai_cloud_lake_commit_duration_seconds_count") == value(
        after, "hybridai_cloud_sync_commits_total", outcome="committed"
    )


def test_state_gauges_enrollments_certificates_loops_pool(fleet: LocalFleet) -> None:
    samples = scrape(fleet)
    assert value(samples, "hybridai_cloud_enrollments_total", outcome="enrolled") == 1
    expiry = value(samples, "hybridai_cloud_device_certificate_expiry_seconds", device_id="obs-1")
    assert expiry > 3600  # a fresh certificate
    for status in ("pending", "running", "paused", "succeeded", "aborted"):
        assert ("hybridai_cloud_rollouts", (("status", status),)) in samples
    states = {
        labels: v for (name, labels), v in samples.items() if name == "hybridai_cloud_loop_state"
    }
    ticker = {
        dict(labels)["state"]: v
        for labels, v in states.items()
        if ("loop", "rollout-ticker") in labels
    }
    assert sum(ticker.values()) == 1 and ticker.get("backing_off") == 0
    assert ("hybridai_cloud_loop_restarts_total", (("loop", "rollout-ticker"),)) in samples
    assert value(samples, "hybridai_cloud_db_pool_size") >= 1
    assert ("hybridai_cloud_db_pool_checked_out", ()) in samples


def test_every_family_follows_prometheus_conventions(fleet: LocalFleet) -> None:
    assert fleet.api is not None
    text = fleet.api.get("/metrics").text
    families = list(text_string_to_metric_families(text))
    assert len(families) >= 12
    units = ("_seconds", "_bytes", "_rows")  # rows: a count unit (rows per batch)
    for family in families:
        assert re.fullmatch(r"hybridai_cloud_[a-z0-9_]+", family.name), family.name
        assert not re.search(r"_(ms|millis|milliseconds|kb|mb|minutes|hours)(_|$)", family.name)
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith(units), f"{family.name}: a histogram needs its base unit"
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
        assert family.documentation, f"{family.name} has no help text"


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


@pytest.fixture(scope="module")
def casc(fleet: LocalFleet) -> str:
    """A cascade model that escalates every request to the cloud, loaded at obs-1."""
    onnx = train_classifier_onnx()
    files = {"edge": ("edge.onnx", onnx), "cloud": ("cloud.onnx", onnx)}
    version = str(fleet.call("POST", "/api/v1/models/casc/versions", files=files)["version"])
    policy = {"kind": "cascade", "cascade": {"measure": "margin", "threshold": 2.0}}
    fleet.call(
        "PUT",
        "/api/v1/deployments/casc",
        json={"name": "casc", "version": version, "policy": policy},
    )

    def ready() -> bool:
        models = {m["name"]: m for m in fleet.edge_status("obs-1")["models"]}
        return bool(models.get("casc", {}).get("state") == "ready")

    wait_for("obs-1 to load casc", ready, 60)
    return version


def test_one_trace_id_from_edge_to_cloud_and_no_record_value_in_any_log(
    fleet: LocalFleet, casc: str
) -> None:
    trace_id = secrets.token_hex(16)
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}
    response = httpx.post(
        f"{fleet.edges['obs-1'].url}/v2/models/casc/infer",
        json=body,
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["parameters"]["escalated"] is True
    assert response.headers["traceparent"].split("-")[1] == trace_id  # continued, not replaced

    # A request without one gets a fresh trace, named in its answer
    fresh = httpx.post(f"{fleet.edges['obs-1'].url}/v2/models/casc/infer", json=body, timeout=30)
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", fresh.headers["traceparent"])
    assert fresh.headers["traceparent"].split("-")[1] != trace_id

    assert fleet.cloud is not None
    cloud_log, edge_log = fleet.cloud.log, fleet.edges["obs-1"].log

    def cloud_logged() -> bool:
        return any(line.get("trace_id") == trace_id for line in _json_lines(cloud_log))

    wait_for("the cloud to log the escalated request", cloud_logged, 30)
    cloud_lines = [line for line in _json_lines(cloud_log) if line.get("trace_id") == trace_id]
    edge_lines = [line for line in _json_lines(edge_log) if line.get("trace_id") == trace_id]
    infer_route = "/v2/models/{name}/infer"
    assert any(
        line.get("route") == infer_route and line["status"] == 200 and line["principal"] == "obs-1"
        for line in cloud_lines
    ), cloud_lines
    edge_request = [line for line in edge_lines if line.get("route") == infer_route]
    assert edge_request and edge_request[0]["device"] == "obs-1", edge_lines
    assert edge_request[0]["model"] == "casc"
    for line in cloud_lines + edge_lines:
        assert {"ts", "level", "component", "message"} <= set(line)

    # Background work at info: the lake commits of the earlier test, the enrollment
    messages = [line["message"] for line in _json_lines(cloud_log) if line["level"] == "info"]
    assert any("records to the lake" in m for m in messages), messages[-20:]
    assert any("enrolled" in m for m in messages)

    for path in (cloud_log, edge_log):
        text = path.read_text(errors="replace")
        assert SECRET_TEXT not in text, f"{path.name} logs a record value"
        assert str(SECRET_NUMBER) not in text, f"{path.name} logs an input value"


def test_status_reports_carry_a_metrics_summary_per_model_version(
    fleet: LocalFleet, casc: str
) -> None:
    url = fleet.edges["obs-1"].url
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}
    for _ in range(3):
        assert httpx.post(f"{url}/v2/models/casc/infer", json=body, timeout=30).status_code == 200
    summary = fleet.edge_status("obs-1")["metrics"]
    assert summary["requests"] >= 3 and summary["escalations"] >= 3
    cloud = summary["latency"]["cloud"]
    assert cloud["requests"] >= 3 and 0 < cloud["p50_ms"] <= cloud["p99_ms"]
    model = next(m for m in summary["models"] if m["name"] == "casc")
    assert model["version"] == casc and model["requests"] >= 3 and model["p99_ms"] > 0
    assert summary["disk_bytes"] > 0  # the records of the sync test

    def kept() -> bool:  # the cloud keeps the latest report's summary per device
        device = fleet.call("GET", "/api/v1/devices/obs-1")
        reported = (device.get("status") or {}).get("metrics") or {}
        return int(reported.get("escalations", 0)) >= 3

    wait_for("the cloud to hold obs-1's metrics summary", kept, 30)
    text = httpx.get(f"{url}/metrics", timeout=5).text
    served = f'hybridai_edge_served_total{{degraded="false",model="casc",version="{casc}",where="cloud"}}'
    assert served in text, "the edge's served counter lacks the model version"
