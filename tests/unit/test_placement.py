import itertools

import pytest

from hybridai.orchestrator import Breaker, Ewma, Hints, Placement, Reason, Snapshot, decide


def snap(edge=True, cloud=True, edge_ms=5.0, cloud_ms=40.0):
    return Snapshot(
        edge_model_ready=edge,
        cloud_reachable=cloud,
        edge_estimate_ms=edge_ms,
        cloud_estimate_ms=cloud_ms,
    )


@pytest.mark.parametrize("cloud", [True, False])
@pytest.mark.parametrize("hint", ["auto", "edge", "cloud"])
def test_restricted_data_never_leaves_the_site(cloud, hint):
    d = decide(Hints(data_class="restricted", placement=hint), snap(cloud=cloud, edge_ms=900))
    assert d.placement is Placement.EDGE
    assert d.reason is Reason.RESTRICTED_DATA
    assert d.fallback is None


def test_restricted_without_edge_model_is_refused_not_sent_to_cloud():
    d = decide(Hints(data_class="restricted"), snap(edge=False))
    assert d.placement is Placement.NONE
    assert d.reason is Reason.RESTRICTED_NO_EDGE_MODEL


def test_edge_model_missing_goes_to_cloud():
    d = decide(Hints(), snap(edge=False))
    assert (d.placement, d.reason) == (Placement.CLOUD, Reason.EDGE_MODEL_MISSING)
    assert d.fallback is None


def test_cloud_unreachable_stays_at_edge_flagged_degraded():
    d = decide(Hints(), snap(cloud=False, edge_ms=500, cloud_ms=1))
    assert (d.placement, d.reason, d.degraded) == (Placement.EDGE, Reason.CLOUD_UNREACHABLE, True)


def test_nothing_available():
    d = decide(Hints(), snap(edge=False, cloud=False))
    assert d.placement is Placement.NONE
    assert d.reason is Reason.NOTHING_AVAILABLE


def test_hints_are_honoured():
    assert decide(Hints(placement="edge"), snap(edge_ms=999, cloud_ms=1)).reason is Reason.HINT_EDGE
    d = decide(Hints(placement="cloud"), snap())
    assert (d.placement, d.reason, d.fallback) == (
        Placement.CLOUD,
        Reason.HINT_CLOUD,
        Placement.EDGE,
    )
    d = decide(Hints(placement="cloud"), snap(cloud=False))
    assert (d.placement, d.degraded) == (Placement.EDGE, True)
    assert decide(Hints(placement="edge"), snap(edge=False)).placement is Placement.NONE


def test_lower_latency_wins_without_budget():
    assert decide(Hints(), snap(edge_ms=5, cloud_ms=40)).reason is Reason.EDGE_FASTER
    d = decide(Hints(), snap(edge_ms=80, cloud_ms=40))
    assert (d.placement, d.reason, d.fallback) == (
        Placement.CLOUD,
        Reason.CLOUD_FASTER,
        Placement.EDGE,
    )


def test_budget_picks_the_only_placement_that_meets_it():
    d = decide(Hints(latency_budget_ms=20), snap(edge_ms=5, cloud_ms=40))
    assert d.reason is Reason.ONLY_EDGE_IN_BUDGET
    d = decide(Hints(latency_budget_ms=50), snap(edge_ms=90, cloud_ms=40))
    assert (d.placement, d.reason) == (Placement.CLOUD, Reason.ONLY_CLOUD_IN_BUDGET)
    # neither meets it: the faster one
    assert (
        decide(Hints(latency_budget_ms=1), snap(edge_ms=5, cloud_ms=40)).placement is Placement.EDGE
    )


def test_unmeasured_cloud_prefers_edge():
    d = decide(Hints(), snap(cloud_ms=None))
    assert (d.placement, d.reason) == (Placement.EDGE, Reason.NO_CLOUD_ESTIMATE)


def test_decide_is_total_and_never_sends_restricted_data_to_cloud():
    for edge, cloud, dc, hint, budget, e_ms, c_ms in itertools.product(
        [True, False],
        [True, False],
        ["public", "internal", "personal", "restricted"],
        ["auto", "edge", "cloud"],
        [None, 10.0, 100.0],
        [None, 5.0, 50.0],
        [None, 5.0, 50.0],
    ):
        d = decide(
            Hints(data_class=dc, placement=hint, latency_budget_ms=budget),
            snap(edge, cloud, e_ms, c_ms),
        )
        assert isinstance(d.reason, Reason)
        if d.placement is Placement.EDGE:
            assert edge
        if d.placement is Placement.CLOUD:
            assert cloud and dc != "restricted"
        if d.fallback is Placement.EDGE:
            assert edge


def test_ewma():
    e = Ewma(alpha=0.5)
    assert e.value is None
    e = e.update(10).update(20)
    assert e.value == 15 and e.samples == 2


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown():
    b = Breaker(threshold=2, cooldown_s=5)
    b = b.on_failure(now=0)
    assert b.allows(0)
    b = b.on_failure(now=1)
    assert b.is_open(2) and not b.allows(5.9)
    assert b.allows(6.0)
    b = b.on_failure(now=6)
    assert b.is_open(7)
    assert b.on_success().allows(7)
