"""The rollout state machine: waves, health gates, timeouts, abort, pause/resume."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridai.orchestrator.rollout import (
    DeviceReport,
    HealthGates,
    RolloutConflict,
    RolloutPlan,
    RolloutState,
    abort,
    advance,
    assigned,
    judge,
    pause,
    resume,
    wave_sizes,
)

DEVICES = tuple(f"d{i}" for i in range(10))


def _plan(**kw: object) -> RolloutPlan:
    base: dict[str, object] = {
        "model": "pm",
        "from_version": "1",
        "to_version": "2",
        "devices": DEVICES,
        "canary_share": 0.1,
        "step_share": 0.3,
        "soak_s": 5.0,
        "abort_unhealthy_share": 0.05,
        "device_timeout_s": 30.0,
    }
    base.update(kw)
    return RolloutPlan(**base)  # type: ignore[arg-type]


def _serving(
    devices: object, version: str, at: float, requests: int = 20, **kw: object
) -> dict[str, DeviceReport]:
    return {
        d: DeviceReport(device_id=d, reported_at=at, version=version, requests=requests, **kw)  # type: ignore[arg-type]
        for d in devices  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize(
    ("total", "canary", "step", "expected"),
    [
        (10, 0.1, 0.3, [1, 4, 7, 10]),
        (3, 0.34, 0.33, [1, 2, 3]),
        (3, 0.67, 0.5, [2, 3]),
        (3, 0.33, 0.33, [1, 2, 3]),
        (1, 0.01, 0.5, [1]),
        (5, 1.0, 0.1, [5]),
        (100, 0.05, 0.25, [5, 30, 55, 80, 100]),
        (0, 0.1, 0.1, []),
    ],
)
def test_wave_sizes(total: int, canary: float, step: float, expected: list[int]) -> None:
    assert wave_sizes(total, canary, step) == expected


@given(
    total=st.integers(1, 300),
    canary=st.floats(0.001, 1.0),
    step=st.floats(0.001, 1.0),
)
def test_wave_sizes_always_grow_to_everything(total: int, canary: float, step: float) -> None:
    sizes = wave_sizes(total, canary, step)
    assert sizes[0] >= 1 and sizes[-1] == total
    assert all(b > a for a, b in itertools.pairwise(sizes))


@pytest.mark.parametrize(
    ("report", "now", "health", "why"),
    [
        (None, 10.0, "waiting", "loading"),
        (None, 31.0, "unhealthy", "within 30s"),
        (DeviceReport("d", reported_at=5.0, version="1"), 20.0, "waiting", "loading"),
        (DeviceReport("d", reported_at=5.0, version="2", requests=20), 6.0, "healthy", "serving"),
        (DeviceReport("d", reported_at=5.0, version="2"), 6.0, "waiting", "traffic: 0/20"),
        (DeviceReport("d", reported_at=-1.0, version="2"), 6.0, "waiting", "loading"),  # stale
        (
            DeviceReport("d", reported_at=5.0, version="1", failed_version="2", error="bad"),
            6.0,
            "unhealthy",
            "could not load v2",
        ),
        (
            DeviceReport("d", reported_at=5.0, version="2", requests=100, errors=6),
            6.0,
            "unhealthy",
            "error rate",
        ),
        (
            DeviceReport("d", reported_at=5.0, version="2", requests=10, errors=6),
            6.0,
            "waiting",  # too little traffic to judge a rate: wait for more
            "waiting for traffic: 10/20 requests",
        ),
        (
            DeviceReport("d", reported_at=5.0, version="2", requests=50, p99_ms=300.0),
            6.0,
            "unhealthy",
            "p99",
        ),
        (
            DeviceReport("d", reported_at=5.0, version="2", requests=50, escalations=30),
            6.0,
            "unhealthy",
            "escalation rate",
        ),
        (
            DeviceReport(
                "d",
                reported_at=5.0,
                version="2",
                requests=50,
                confidence_mean=0.6,
                baseline_confidence=0.9,
            ),
            6.0,
            "unhealthy",
            "confidence shifted",
        ),
    ],
)
def test_judge(report: DeviceReport | None, now: float, health: str, why: str) -> None:
    plan = _plan(
        gates=HealthGates(max_p99_ms=200, max_escalation_rate=0.5, max_confidence_shift=0.2)
    )
    verdict = judge(plan, report, since=0.0, now=now)
    assert verdict.health == health
    assert why in verdict.reason


def test_a_healthy_rollout_grows_wave_by_wave_after_soak_and_succeeds() -> None:
    plan = _plan()
    state = advance(plan, RolloutState(), {}, 0.0)
    assert state.status == "running" and assigned(state) == {"d0"}
    # not yet reported: waiting, no growth
    state = advance(plan, state, {}, 1.0)
    assert state.step == 1
    state = advance(plan, state, _serving(["d0"], "2", 2.0), 2.0)
    assert state.steps[0].converged_at == 2.0 and state.step == 1
    state = advance(plan, state, _serving(["d0"], "2", 6.0), 6.0)  # soak 5s not over
    assert state.step == 1
    state = advance(plan, state, _serving(["d0"], "2", 7.0), 7.0)
    assert state.step == 2 and assigned(state) == {"d0", "d1", "d2", "d3"}
    t = 7.0
    while state.status == "running":
        t += 1.0
        state = advance(plan, state, _serving(state.updated, "2", t), t)
    assert state.status == "succeeded"
    assert assigned(state) == set(DEVICES)
    assert [len(s.devices) for s in state.steps] == [1, 3, 3, 3]


def test_a_canary_that_cannot_load_aborts_and_assigns_nothing() -> None:
    plan = _plan()
    state = advance(plan, RolloutState(), {}, 0.0)
    bad = {"d0": DeviceReport("d0", 1.0, version="1", failed_version="2", error="refused: x")}
    state = advance(plan, state, bad, 1.0)
    assert state.status == "aborted"
    assert "d0: could not load v2" in state.reason
    assert assigned(state) == frozenset()


def test_a_silent_device_times_out_and_aborts() -> None:
    plan = _plan(device_timeout_s=10.0)
    state = advance(plan, RolloutState(), {}, 0.0)
    state = advance(plan, state, {}, 9.0)
    assert state.status == "running"
    state = advance(plan, state, {}, 11.0)
    assert state.status == "aborted" and "within 10s" in state.reason


def test_unhealthy_within_the_threshold_does_not_abort() -> None:
    devices = tuple(f"d{i}" for i in range(40))
    plan = _plan(devices=devices, canary_share=1.0, abort_unhealthy_share=0.05, soak_s=0)
    state = advance(plan, RolloutState(), {}, 0.0)
    reports = _serving(devices, "2", 1.0)
    reports["d7"] = DeviceReport("d7", 1.0, version="1", failed_version="2")
    reports["d9"] = DeviceReport("d9", 1.0, version="1", failed_version="2")  # 2/40 = 5%
    state = advance(plan, state, reports, 1.0)
    assert state.status == "succeeded"
    reports["d11"] = DeviceReport("d11", 1.0, version="1", failed_version="2")  # 3/40 > 5%
    state = advance(plan, advance(plan, RolloutState(), {}, 0.0), reports, 1.0)
    assert state.status == "aborted"


def test_pause_stops_growth_but_not_safety_and_resume_restarts_the_clock() -> None:
    plan = _plan(soak_s=0)
    state = advance(plan, RolloutState(), {}, 0.0)
    state = pause(state, 1.0)
    state = advance(plan, state, _serving(["d0"], "2", 2.0), 2.0)
    assert state.status == "paused" and state.step == 1
    assert assigned(state) == {"d0"}  # updated devices stay updated while paused
    state = resume(state, 50.0)
    assert state.status == "running" and state.steps[-1].started_at == 50.0
    state = advance(plan, state, {}, 60.0)  # d0's evidence is older than the restart
    assert state.status == "running" and state.step == 1
    state = advance(plan, state, _serving(["d0"], "2", 61.0), 61.0)
    assert state.step == 2
    # safety never pauses
    paused = pause(state, 62.0)
    broken = {"d1": DeviceReport("d1", 63.0, version="1", failed_version="2")}
    assert advance(plan, paused, broken, 63.0).status == "aborted"


@pytest.mark.parametrize(
    ("status", "op"),
    [
        ("succeeded", "pause"),
        ("aborted", "pause"),
        ("running", "resume"),
        ("succeeded", "abort"),
        ("aborted", "abort"),
    ],
)
def test_operations_refused_in_the_wrong_status(status: str, op: str) -> None:
    state = RolloutState(status=status)  # type: ignore[arg-type]
    with pytest.raises(RolloutConflict):
        if op == "pause":
            pause(state, 1.0)
        elif op == "resume":
            resume(state, 1.0)
        else:
            abort(state, "x", 1.0)


def test_terminal_states_do_not_move_and_bad_plans_abort_at_start() -> None:
    plan = _plan()
    done = RolloutState(status="succeeded")
    assert advance(plan, done, {}, 5.0) is done
    state = advance(_plan(devices=()), RolloutState(), {}, 0.0)
    assert state.status == "aborted" and "no devices" in state.reason
    assert "already" in _plan(to_version="1").problems()[0]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    canary=st.floats(0.01, 1.0),
    step=st.floats(0.01, 1.0),
    threshold=st.floats(0.0, 0.5),
    outcomes=st.lists(st.sampled_from(["ok", "fail", "silent"]), min_size=30, max_size=30),
)
def test_invariants_under_any_outcomes(
    n: int, canary: float, step: float, threshold: float, outcomes: list[str]
) -> None:
    """Whatever devices do: assignments only grow, stay in the target, and the run ends."""
    devices = tuple(f"d{i}" for i in range(n))
    plan = _plan(
        devices=devices,
        canary_share=canary,
        step_share=step,
        abort_unhealthy_share=threshold,
        soak_s=1.0,
        device_timeout_s=5.0,
    )
    state = advance(plan, RolloutState(), {}, 0.0)
    seen: frozenset[str] = frozenset()
    t = 0.0
    for _ in range(10 * n + 20):
        if state.status in ("succeeded", "aborted"):
            break
        t += 1.0
        reports = {}
        for i, d in enumerate(state.updated):
            if outcomes[i] == "ok":
                reports[d] = DeviceReport(d, t, version="2", requests=20)
            elif outcomes[i] == "fail":
                reports[d] = DeviceReport(d, t, version="1", failed_version="2")
        state = advance(plan, state, reports, t)
        now_assigned = assigned(state)
        assert now_assigned <= set(devices)
        if state.status != "aborted":
            assert seen <= now_assigned
            unhealthy = [v for v in state.verdicts if v.health == "unhealthy"]
            assert len(unhealthy) <= threshold * max(1, len(state.verdicts)) + 1e-9
        seen = now_assigned
    assert state.status in ("succeeded", "aborted")
    if state.status == "succeeded":
        assert assigned(state) == set(devices)
    else:
        assert assigned(state) == frozenset()
    assert replace(state) == state


def test_an_idle_canary_waits_for_traffic_then_is_held_not_promoted() -> None:
    plan = _plan(soak_s=0, traffic_timeout_s=100.0)
    state = advance(plan, RolloutState(), {}, 0.0)
    state = advance(plan, state, _serving(["d0"], "2", 5.0, requests=3), 5.0)
    assert (state.status, state.step) == ("running", 1)
    assert state.reason == "waiting for traffic: d0 3/20 requests"
    assert state.verdicts[0].reason == "waiting for traffic: 3/20 requests"
    state = advance(plan, state, _serving(["d0"], "2", 100.0, requests=19), 100.0)
    assert (state.status, state.step) == ("running", 1)
    held = advance(plan, state, _serving(["d0"], "2", 101.0, requests=19), 101.0)
    assert (held.status, held.step, assigned(held)) == ("paused", 1, {"d0"})
    assert held.reason.startswith("held: too little traffic within 100s (d0 19/20 requests)")
    assert advance(plan, held, _serving(["d0"], "2", 200.0), 200.0).step == 1  # held stays
    # an operator resumes once traffic flows: enough requests let it grow
    resumed = resume(held, 300.0)
    assert advance(plan, resumed, _serving(["d0"], "2", 301.0, requests=20), 301.0).step == 2


def test_allow_idle_accepts_a_canary_without_traffic() -> None:
    plan = _plan(soak_s=0, gates=HealthGates(allow_idle=True))
    state = advance(plan, RolloutState(), {}, 0.0)
    state = advance(plan, state, _serving(["d0"], "2", 1.0, requests=0), 1.0)
    assert state.step == 2 and state.verdicts[0].health == "healthy"


def test_plans_without_a_traffic_limit_or_minimum_are_refused() -> None:
    assert "traffic timeouts > 0" in _plan(traffic_timeout_s=0).problems()[0]
    assert "at least 1" in _plan(gates=HealthGates(min_requests=0)).problems()[0]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 12),
    canary=st.floats(0.05, 1.0),
    step=st.floats(0.05, 1.0),
    minimum=st.integers(1, 50),
    allow_idle=st.booleans(),
    traffic=st.lists(st.integers(0, 60), min_size=12, max_size=12),
)
def test_no_step_grows_on_too_little_traffic_unless_idle_is_allowed(
    n: int,
    canary: float,
    step: float,
    minimum: int,
    allow_idle: bool,
    traffic: list[int],
) -> None:
    """Whatever traffic each device gets: growth and success need ``minimum`` on every device."""
    devices = tuple(f"d{i}" for i in range(n))
    gates = HealthGates(min_requests=minimum, allow_idle=allow_idle)
    plan = _plan(
        devices=devices,
        canary_share=canary,
        step_share=step,
        soak_s=1.0,
        traffic_timeout_s=10.0,
        gates=gates,
    )
    requests = dict(zip(devices, traffic, strict=False))
    state = advance(plan, RolloutState(), {}, 0.0)
    t = 0.0
    for _ in range(20 * n + 20):
        if state.status in ("succeeded", "aborted", "paused"):
            break
        t += 1.0
        before = state.step
        reports = {d: DeviceReport(d, t, version="2", requests=requests[d]) for d in state.updated}
        state = advance(plan, state, reports, t)
        if state.step > before or state.status == "succeeded":
            served = [requests[d] for d in state.steps[before - 1].devices]
            assert allow_idle or min(served) >= minimum
    starved = [d for d in devices if requests[d] < minimum]
    if allow_idle or not starved:
        assert state.status == "succeeded"
    else:
        assert state.status == "paused" and state.reason.startswith("held: too little traffic")
        assert set(starved) & set(state.updated)  # held at the first step with a starved device
