"""deploy/prometheus and deploy/grafana: valid for the tools, and on metrics that exist.

promtool (Debian's ``prometheus`` package) checks the scrape config and the alert rules, and
runs unit tests of the rules' logic on synthetic series; a JSON schema holds the dashboard to
the fields Grafana needs. Every metric name the rules and the dashboard use must be one a real
edge (and the cloud, once it serves /metrics) exposes, so renaming a metric breaks this test
instead of silently emptying a panel or muting an alert.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from _fleet import local_fleet

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
METRIC = re.compile(r"\bhybridai_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count", "_created")
BROKER = ("127.0.0.1", 1883)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, installed from Debian's prometheus package when missing (make test runs as root)."""
    found = shutil.which("promtool")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y"]
        install += ["--no-install-recommends", "prometheus"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = shutil.which("promtool")
    if found is None:
        message = "promtool is missing: apt-get install prometheus (Debian) provides it"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


def _promtool(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture
def prometheus_dir(tmp_path: Path) -> Path:
    """deploy/prometheus with the secret files its comments ask for, as an operator sets it up."""
    folder = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, folder)
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for section, key in (
            ("authorization", "credentials_file"),
            ("basic_auth", "password_file"),
            ("tls_config", "ca_file"),
        ):
            name = job.get(section, {}).get(key)
            if name:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text("placeholder\n")
    return folder


def test_promtool_accepts_the_scrape_config_and_its_rules(
    promtool: str, prometheus_dir: Path
) -> None:
    checked = _promtool(promtool, "check", "config", "prometheus.yml", cwd=prometheus_dir)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "alerts.yml" in checked.stdout  # the rules were checked through rule_files too


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    checked = _promtool(promtool, "check", "rules", "alerts.yml", cwd=PROMETHEUS)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_refuses_a_broken_rule(promtool: str, prometheus_dir: Path) -> None:
    """The check above can fail: a rule with a PromQL syntax error is refused."""
    rules = prometheus_dir / "alerts.yml"
    rules.write_text(rules.read_text().replace("== 0", "== ", 1))

    checked = _promtool(promtool, "check", "rules", "alerts.yml", cwd=prometheus_dir)

    assert checked.returncode != 0


# Series for promtool's rule unit tests: each fault raises its alert, a steady fleet none.
RULE_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="hybridai-edge", instance="e1"}'
        values: '1 1 0x10'
      - series: 'up{job="hybridai-edge", instance="e2"}'
        values: '1x12'
    alert_rule_test:
      - eval_time: 5m
        alertname: HybridaiEdgeSilent
        exp_alerts:
          - exp_labels: {severity: critical, job: hybridai-edge, instance: e1}
  - interval: 1m
    input_series:
      - series: 'hybridai_edge_store_backlog_records{job="hybridai-edge", instance="e1", stream="telemetry"}'
        values: '2000+100x40'
      - series: 'hybridai_edge_store_backlog_records{job="hybridai-edge", instance="e2", stream="telemetry"}'
        values: '5000x40'
    alert_rule_test:
      - eval_time: 35m
        alertname: HybridaiEdgeBacklogGrowing
        exp_alerts:
          - exp_labels: {severity: warning, job: hybridai-edge, instance: e1, stream: telemetry}
  - interval: 1m
    input_series:
      - series: 'hybridai_edge_store_oldest_unsynced_age_seconds{job="hybridai-edge", instance="e1", stream="alerts"}'
        values: '0+60x30'
      - series: 'hybridai_edge_store_oldest_unsynced_age_seconds{job="hybridai-edge", instance="e2", stream="alerts"}'
        values: '2x30'
    alert_rule_test:
      - eval_time: 10m
        alertname: HybridaiEdgeSyncStopped
        exp_alerts: []
      - eval_time: 25m
        alertname: HybridaiEdgeSyncStopped
        exp_alerts:
          - exp_labels: {severity: critical, job: hybridai-edge, instance: e1, stream: alerts}
  - interval: 1m
    input_series:
      - series: 'hybridai_edge_certificate_expiry_timestamp_seconds{job="hybridai-edge", instance="e1", certificate="device"}'
        values: '7200x30'
      - series: 'hybridai_edge_certificate_expiry_timestamp_seconds{job="hybridai-edge", instance="e2", certificate="device"}'
        values: '86400x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: HybridaiEdgeCertificateRenewalFailing
        exp_alerts:
          - exp_labels: {severity: warning, job: hybridai-edge, instance: e1, certificate: device}
  - interval: 1m
    input_series:
      - series: 'hybridai_edge_clock_skew_seconds{job="hybridai-edge", instance="e1"}'
        values: '-120x20'
      - series: 'hybridai_edge_clock_skew_seconds{job="hybridai-edge", instance="e2"}'
        values: '0.4x20'
    alert_rule_test:
      - eval_time: 15m
        alertname: HybridaiEdgeClockSkew
        exp_alerts:
          - exp_labels: {severity: warning, job: hybridai-edge, instance: e1}
  - interval: 1m
    input_series:
      - series: 'hybridai_cloud_http_requests_total{job="hybridai-cloud", instance="c1", status="200"}'
        values: '0+600x30'
      - series: 'hybridai_cloud_http_requests_total{job="hybridai-cloud", instance="c1", status="503"}'
        values: '0+60x30'
      - series: 'hybridai_cloud_http_requests_total{job="hybridai-cloud", instance="c2", status="200"}'
        values: '0+600x30'
      - series: 'hybridai_cloud_http_requests_total{job="hybridai-cloud", instance="c2", status="500"}'
        values: '0+1x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: HybridaiCloudErrorRate
        exp_alerts:
          - exp_labels: {severity: critical, job: hybridai-cloud, instance: c1}
  - interval: 1m
    input_series:
      - series: 'hybridai_cloud_loop_state{job="hybridai-cloud", instance="c1", loop="rollout", state="backing_off"}'
        values: '1x20'
      - series: 'hybridai_cloud_loop_state{job="hybridai-cloud", instance="c1", loop="retraining", state="backing_off"}'
        values: '0x20'
    alert_rule_test:
      - eval_time: 15m
        alertname: HybridaiCloudLoopFailing
        exp_alerts:
          - exp_labels: {severity: warning, job: hybridai-cloud, instance: c1, loop: rollout, state: backing_off}
"""


def test_alert_rules_fire_on_their_faults_and_not_on_a_steady_fleet(
    promtool: str, tmp_path: Path
) -> None:
    """Annotations are dropped from a copy (promtool compares them verbatim); the exprs stay."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests.yml").write_text(RULE_TESTS)

    tested = _promtool(promtool, "test", "rules", "tests.yml", cwd=tmp_path)

    assert tested.returncode == 0, tested.stdout + tested.stderr


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "hybridai.json").read_text())
    return data


def _schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "dashboard.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def test_the_dashboard_has_what_grafana_needs() -> None:
    dashboard = _dashboard()

    jsonschema.validate(dashboard, _schema(), cls=jsonschema.Draft202012Validator)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.parametrize(
    "breakage",
    ["no uid", "panel without targets", "panel wider than the grid"],
)
def test_the_schema_refuses_a_broken_dashboard(breakage: str) -> None:
    dashboard = _dashboard()
    graph = next(p for p in dashboard["panels"] if p["type"] == "timeseries")
    if breakage == "no uid":
        del dashboard["uid"]
    elif breakage == "panel without targets":
        del graph["targets"]
    else:
        graph["gridPos"]["w"] = 30

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dashboard, _schema(), cls=jsonschema.Draft202012Validator)


def _used_names() -> dict[str, set[str]]:
    """Metric names in the rules and the dashboard, by where they are used."""
    rules = (PROMETHEUS / "alerts.yml").read_text()
    exprs = [rule["expr"] for group in yaml.safe_load(rules)["groups"] for rule in group["rules"]]
    panels = [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]
    return {
        "alerts.yml": {m for e in exprs for m in METRIC.findall(e)},
        "hybridai.json": {m for e in panels for m in METRIC.findall(e)},
    }


def _exposed(text: str) -> set[str]:
    """Names a /metrics page declares (``# TYPE`` lines), with histogram series suffixes."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update(f"{name}{suffix}" for suffix in SUFFIXES)
    return names


@pytest.fixture
def broker() -> None:
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError:
        if _in_ci():
            pytest.fail("Mosquitto is not running at 127.0.0.1:1883 (CI=true: start it)")
        pytest.skip("no MQTT broker at 127.0.0.1:1883")


@pytest.fixture
def metrics_pages(tmp_path: Path, broker: None) -> Iterator[dict[str, str | None]]:
    """/metrics of a real enrolled edge (with MQTT ingest) and of its cloud (None: 404)."""
    env = {
        "HYBRIDAI_EDGE_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "HYBRIDAI_EDGE_MQTT_TOPICS": json.dumps({f"{tmp_path.name}/telemetry": "telemetry"}),
        "HYBRIDAI_EDGE_MQTT_CLIENT_ID": f"hybridai-{tmp_path.name}"[:60],
    }
    with local_fleet(tmp_path / "fleet") as fleet:
        edge = fleet.start_edge("edge-1", "plant-a", env=env)
        edge_page = httpx.get(f"{edge.url}/metrics", timeout=30)
        assert edge_page.status_code == 200, edge_page.text
        assert fleet.api is not None
        cloud_page = fleet.api.get("/metrics")
        assert cloud_page.status_code in (200, 404), cloud_page.text
        yield {
            "edge": edge_page.text,
            "cloud": cloud_page.text if cloud_page.status_code == 200 else None,
        }


@pytest.mark.slow
def test_every_metric_the_rules_and_dashboard_use_is_exposed(
    metrics_pages: dict[str, str | None],
) -> None:
    edge = _exposed(metrics_pages["edge"] or "")
    cloud_page = metrics_pages["cloud"]
    cloud = _exposed(cloud_page) if cloud_page is not None else set()

    for where, names in _used_names().items():
        for name in sorted(names):
            if name.startswith("hybridai_edge_"):
                assert name in edge, f"{where} uses {name}, which no edge exposes"
            else:
                assert cloud_page is not None, f"{where} uses {name}; the cloud has no /metrics"
                assert name in cloud, f"{where} uses {name}, which the cloud does not expose"
    assert "hybridai_edge_certificate_expiry_timestamp_seconds" in edge


def test_the_up_series_name_jobs_of_the_scrape_config() -> None:
    """``up{job=...}`` in rules and panels selects jobs prometheus.yml defines."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    texts = [(PROMETHEUS / "alerts.yml").read_text(), (GRAFANA / "hybridai.json").read_text()]
    selectors = [s for t in texts for s in re.findall(r'job=~?\\?"([^"\\]+)', t)]

    assert selectors
    for selector in selectors:
        assert any(re.fullmatch(selector, job) for job in jobs), selector
