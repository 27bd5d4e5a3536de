"""The examples in examples/: each scenario runs, each inventory is assessed as it should be."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridai.cli.main import app
from hybridai.planner.assessment import Assessment, assess, html_page, markdown
from hybridai.planner.scenario import load
from hybridai.planner.simulator import simulate

EXAMPLES = Path(__file__).parents[2] / "examples"
NAMES = [
    "predictive-maintenance",
    "quality-inspection",
    "support-assistant",
    "fraud-scoring",
    "network-monitoring",
]


@pytest.mark.parametrize("name", NAMES)
def test_each_example_scenario_runs_every_policy(name: str) -> None:
    scenario = load(EXAMPLES / name / "scenario.yaml")
    short = scenario.model_copy(
        update={
            "duration_s": 300.0,
            "simulation": scenario.simulation.model_copy(update={"max_sites_per_shape": 1}),
        }
    )
    runs = simulate(short)
    assert [r.policy for r in runs] == [p.value for p in scenario.policies]
    for run in runs:
        figures = run.summary()
        assert figures["requests"] > 0 and figures["latency_p50_ms"] is not None


_assessed: dict[str, Assessment] = {}


def assessed(name: str) -> Assessment:
    if name not in _assessed:
        _assessed[name] = assess(load(EXAMPLES / name / "inventory.yaml"))
    return _assessed[name]


def _by_workload(a: Assessment) -> dict[str, str]:
    return {w.workload: w.recommendation for w in a.workloads}


def test_restricted_data_stays_on_site_and_a_site_that_cannot_hold_the_model_is_a_gap() -> None:
    a = assessed("support-assistant")
    assert _by_workload(a)["hr-questions"] == "none"
    gaps = " ".join(a.gaps)
    assert "restricted data must stay on site" in gaps and "does not fit" in gaps


def test_a_thin_link_and_an_impossible_budget_are_flagged() -> None:
    a = assessed("network-monitoring")
    gaps = a.gaps
    assert any("packet-capture" in g and "too thin" in g for g in gaps)
    assert any(g.startswith("ddos-inline: no placement meets the 5 ms budget") for g in gaps)
    assert _by_workload(a)["flow-summaries"] in ("edge", "hybrid")


def test_a_cheap_accurate_edge_model_is_recommended_at_the_edge_with_reasons() -> None:
    a = assessed("fraud-scoring")
    [w] = a.workloads
    assert w.recommendation in ("edge", "hybrid")
    assert w.reasons and {o.placement for o in w.options} == {"edge", "cloud", "hybrid"}
    cloud = next(o for o in w.options if o.placement == "cloud")
    edge = next(o for o in w.options if o.placement == "edge")
    assert cloud.cost_per_day > edge.cost_per_day == 0.0
    assert cloud.latency_p50_ms is not None and edge.latency_p50_ms is not None
    assert cloud.latency_p50_ms > edge.latency_p50_ms


def test_markdown_and_html_carry_every_workload_and_gap() -> None:
    a = assessed("network-monitoring")
    text, page = markdown(a), html_page(a)
    for w in a.workloads:
        assert f"## {w.workload}" in text and w.workload in page
    for gap in a.gaps:
        assert gap.split(": ", 1)[1] in text


def test_the_cli_writes_the_report_and_refuses_a_bad_file(tmp_path: Path) -> None:
    scenario = load(EXAMPLES / "fraud-scoring" / "scenario.yaml")
    short = tmp_path / "short.yaml"
    text = (EXAMPLES / "fraud-scoring" / "scenario.yaml").read_text()
    short.write_text(text.replace("duration_s: 14400", "duration_s: 120"))
    runner = CliRunner()
    got = runner.invoke(
        app, ["plan", "simulate", str(short), "--out", str(tmp_path / "r"), "--policy", "cascade"]
    )
    assert got.exit_code == 0, got.output
    for name in ("report.html", "requests.parquet", "summary.json"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    assert "<img" in (tmp_path / "r" / "report.html").read_text()
    assert scenario.name in got.output or "cascade" in got.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("kind: edge-server", "kind: mainframe"))
    refused = runner.invoke(app, ["plan", "simulate", str(bad)], env={"COLUMNS": "400"})
    assert refused.exit_code == 2
    flat = " ".join(refused.output.split())  # the terminal wraps long lines
    assert f"{bad}:12: sites.0.devices.0.kind: Input should be 'sensor-gateway'" in flat
