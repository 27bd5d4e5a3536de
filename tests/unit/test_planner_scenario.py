"""Scenario files: what a valid one gives, and errors that name the line to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridai.planner.scenario import ScenarioError, load, parse

GOOD = """\
name: two plants
seed: 3
duration_s: 60
sites:
  - name: plant
    count: 2
    devices:
      - name: gateway
        kind: sensor-gateway
        models: [pm]
cloud:
  instances: 1
models:
  - name: pm
    edge:
      service_ms: {kind: lognormal, mean: 5, cv: 0.2}
    cloud:
      service_ms: {kind: exponential, mean: 20}
workloads:
  - name: vibration
    model: pm
    device: gateway
    arrival: {rate_per_s: 2}
    latency_budget_ms: 100
policies: [edge-only, cascade]
"""


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ScenarioError) as caught:
        parse(text, "s.yaml")
    return caught.value.problems


def test_a_valid_scenario_keeps_what_it_says_and_fills_defaults() -> None:
    s = parse(GOOD)
    assert (s.name, s.seed, s.sites[0].count, s.sites[0].devices[0].cores) == (
        "two plants",
        3,
        2,
        1,
    )
    assert [p.value for p in s.policies] == ["edge-only", "cascade"]
    assert s.model("pm").edge.service_ms.expected == pytest.approx(5.0)


def test_a_wrong_value_is_reported_on_its_own_line() -> None:
    bad = GOOD.replace("kind: sensor-gateway", "kind: toaster")
    [(line, where, message)] = _problems(bad)
    assert line == 9
    assert where == "sites.0.devices.0.kind"
    assert "sensor-gateway" in message  # says what would be accepted


def test_a_missing_field_points_at_its_parent_and_a_stray_one_at_itself() -> None:
    missing = GOOD.replace("    arrival: {rate_per_s: 2}\n", "")
    [(line, where, message)] = _problems(missing)
    assert (line, where) == (20, "workloads.0.arrival") and "required" in message.lower()
    stray = GOOD.replace("  instances: 1\n", "  instances: 1\n  instancez: 3\n")
    [(line, where, _)] = _problems(stray)
    assert (line, where) == (13, "cloud.instancez")


def test_a_distribution_without_its_parameter_names_the_line_and_what_it_needs() -> None:
    bad = GOOD.replace("{kind: exponential, mean: 20}", "{kind: exponential}")
    [(line, where, message)] = _problems(bad)
    assert line == 18 and where.startswith("models.0.cloud.service_ms")
    assert "needs mean" in message


def test_names_that_refer_to_nothing_are_errors_with_lines() -> None:
    bad = GOOD.replace("    model: pm\n", "    model: pn\n").replace("models: [pm]", "models: [px]")
    found = {(line, where) for line, where, _ in _problems(bad)}
    assert found == {(10, "sites.0.devices.0.models.0"), (21, "workloads.0.model")}


def test_broken_yaml_and_a_missing_file_say_so() -> None:
    [(line, where, _message)] = _problems(GOOD.replace("seed: 3", "seed: [3"))
    assert where == "(yaml)" and line is not None and line >= 2
    with pytest.raises(ScenarioError, match="cannot read it"):
        load(Path("/nonexistent/scenario.yaml"))


def test_the_error_text_reads_file_line_place_message() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse(GOOD.replace("rate_per_s: 2", "rate_per_s: -2"), "plant.yaml")
    assert str(caught.value).startswith("plant.yaml:23: workloads.0.arrival.rate_per_s: ")


def test_every_example_is_valid() -> None:
    examples = sorted(Path(__file__).parents[2].glob("examples/*/scenario.yaml"))
    assert examples
    for path in examples:
        load(path)
