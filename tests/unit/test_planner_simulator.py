"""The simulator: deterministic for a seed, and its queues agree with queueing theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridai.planner.scenario import Scenario, parse
from hybridai.planner.simulator import simulate
from hybridai.protocol.placement import PolicyKind

SMALL = """\
name: small
seed: {seed}
duration_s: 600
sites:
  - name: plant
    count: 3
    devices:
      - {{name: gateway, kind: sensor-gateway, cores: 1, models: [pm]}}
      - {{name: server, kind: edge-server, cores: 4, speed: 2, models: [pm]}}
    link:
      rtt_ms: {{kind: lognormal, mean: 40, cv: 0.3}}
      bandwidth_mbps: 10
      loss: 0.01
      outages: [{{start_s: 200, duration_s: 60}}]
cloud:
  instances: 1
  workers_per_instance: 2
  autoscaling: {{min_instances: 1, max_instances: 4, interval_s: 30, startup_s: 20}}
  cost_per_call: 0.001
  cost_per_instance_hour: 1.0
  egress_cost_per_gb: 0.1
models:
  - name: pm
    edge: {{service_ms: {{kind: exponential, mean: 8}}}}
    cloud: {{service_ms: {{kind: lognormal, mean: 20, cv: 0.5}}}}
    cascade_threshold: 0.5
workloads:
  - name: vibration
    model: pm
    device: gateway
    arrival: {{rate_per_s: 5, bursts: {{every_s: 120, duration_s: 10, factor: 5}}}}
    payload_bytes: {{kind: uniform, low: 1000, high: 20000}}
    latency_budget_ms: 80
policies: [edge-only, cloud-only, latency, cascade]
"""


def small(seed: int = 1) -> Scenario:
    return parse(SMALL.format(seed=seed))


def test_the_same_seed_gives_the_same_requests_and_answers() -> None:
    first = simulate(small(1))
    again = simulate(small(1))
    other = simulate(small(2), [PolicyKind.CASCADE])
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.latency_ms, b.latency_ms, equal_nan=True)
        assert a.where == b.where and a.reason == b.reason
        assert a.summary() | {"wall_s": 0} == b.summary() | {"wall_s": 0}
    assert not np.array_equal(first[3].arrival, other[0].arrival)


def test_every_policy_meets_the_same_requests_and_behaves_as_named() -> None:
    runs = {r.policy: r for r in simulate(small())}
    assert len({len(r.arrival) for r in runs.values()}) == 1
    assert np.array_equal(runs["edge-only"].arrival, runs["cascade"].arrival)
    figures = {name: r.summary(0.1) for name, r in runs.items()}
    assert figures["edge-only"]["cloud_calls"] == 0 and figures["edge-only"]["egress_bytes"] == 0
    assert figures["cloud-only"]["cloud_share"] > 0.8  # but not while the link is out
    # the outage: cloud-only answers on site, flagged degraded, while the link is down
    assert figures["cloud-only"]["degraded"] > 0
    assert 0 < figures["cascade"]["escalation_share"] < 0.5
    assert figures["cascade"]["quality"] > figures["edge-only"]["quality"]
    assert figures["cloud-only"]["wan_bytes"] > figures["edge-only"]["wan_bytes"] > 0  # sync


def _queue(cores: int, rate: float, service_ms: float, duration_s: float) -> Scenario:
    return parse(
        f"""\
name: queue
seed: 11
duration_s: {duration_s}
sites:
  - name: s
    devices: [{{name: d, kind: edge-server, cores: {cores}, models: [m]}}]
models:
  - name: m
    edge: {{service_ms: {{kind: exponential, mean: {service_ms}}}}}
    cloud: {{service_ms: {{kind: constant, value: 1}}}}
workloads:
  - {{name: w, model: m, device: d, arrival: {{rate_per_s: {rate}}}}}
policies: [edge-only]
simulation: {{queue_budget: null}}
"""
    )


def erlang_c_wait_s(c: int, arrival: float, service: float) -> float:
    """Mean wait in queue of M/M/c (Erlang C), arrival rate and service rate per second."""
    a = arrival / service
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * service - arrival)


@pytest.mark.parametrize(("cores", "rate", "duration_s"), [(1, 60.0, 1000.0), (4, 300.0, 400.0)])
def test_edge_queue_mean_wait_matches_the_closed_form(
    cores: int, rate: float, duration_s: float
) -> None:
    service_ms = 10.0
    [run] = simulate(_queue(cores, rate, service_ms, duration_s))
    served = ~run.failed
    assert served.all()
    # the wait is the latency less the request's own service time (drawn, so known exactly)
    mean_latency_s = float(run.latency_ms[served].mean()) / 1000.0
    expected = erlang_c_wait_s(cores, rate, 1000.0 / service_ms) + service_ms / 1000.0
    assert mean_latency_s == pytest.approx(expected, rel=0.04)
