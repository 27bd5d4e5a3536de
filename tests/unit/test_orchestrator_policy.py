from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridai.orchestrator import (
    Candidate,
    Exclusion,
    ModelPolicy,
    Placement,
    PolicyKind,
    Reason,
    RequestFacts,
    Requirements,
    Tier,
    place,
)
from hybridai.orchestrator.candidates import incapable

# A thin gateway (this node), the site's edge server (a peer) and the cloud.
GW = Candidate("gw", Tier.LOCAL, variant="small", loaded=True, predicted_ms=5, energy_j_per_call=1)
SRV = Candidate(
    "srv",
    Tier.PEER,
    variant="big",
    loaded=True,
    accelerator="cuda",
    predicted_ms=12,
    energy_j_per_call=3,
)
CLOUD = Candidate(
    "cloud", Tier.CLOUD, variant="big", loaded=True, predicted_ms=60, cost_per_call=1e-3
)
NO_MODEL = replace(GW, variant=None, loaded=False)
DOWN = replace(CLOUD, healthy=False)
BUSY = replace(GW, queue_depth=10, queue_budget=4)

LATENCY = ModelPolicy(PolicyKind.LATENCY)
EDGE_ONLY = ModelPolicy(PolicyKind.EDGE_ONLY)
CLOUD_ONLY = ModelPolicy(PolicyKind.CLOUD_ONLY)
CASCADE = ModelPolicy(PolicyKind.CASCADE)
R = RequestFacts

# id, request, candidates, policy, expected (placement, target, reason), extra expectations
CASES = [
    (
        "restricted stays on site despite a cloud hint",
        R(data_class="restricted", placement="cloud"),
        [GW, CLOUD],
        LATENCY,
        (Placement.EDGE, "gw", Reason.RESTRICTED_DATA),
        {"excluded": {"cloud": Exclusion.LEAVES_SITE}},
    ),
    (
        "restricted may go to a site peer",
        R(data_class="restricted"),
        [NO_MODEL, SRV, CLOUD],
        LATENCY,
        (Placement.PEER, "srv", Reason.RESTRICTED_DATA),
        {},
    ),
    (
        "restricted with no model on site is refused",
        R(data_class="restricted"),
        [NO_MODEL, CLOUD],
        LATENCY,
        (Placement.NONE, None, Reason.RESTRICTED_NO_EDGE_MODEL),
        {},
    ),
    (
        "restricted cascade never escalates off site",
        R(data_class="restricted"),
        [GW, CLOUD],
        CASCADE,
        (Placement.EDGE, "gw", Reason.RESTRICTED_DATA),
        {"escalate_to": None},
    ),
    (
        "edge hint honoured even when slower",
        R(placement="edge"),
        [replace(GW, predicted_ms=500), CLOUD],
        LATENCY,
        (Placement.EDGE, "gw", Reason.HINT_EDGE),
        {"excluded": {"cloud": Exclusion.HINT}},
    ),
    (
        "edge hint with no model on site",
        R(placement="edge"),
        [NO_MODEL, CLOUD],
        LATENCY,
        (Placement.NONE, None, Reason.HINT_EDGE_NO_MODEL),
        {},
    ),
    (
        "cloud hint honoured with the edge as fallback",
        R(placement="cloud"),
        [GW, CLOUD],
        LATENCY,
        (Placement.CLOUD, "cloud", Reason.HINT_CLOUD),
        {"fallback": Placement.EDGE, "fallback_target": "gw"},
    ),
    (
        "cloud hint, cloud down: edge answers degraded",
        R(placement="cloud"),
        [GW, DOWN],
        LATENCY,
        (Placement.EDGE, "gw", Reason.HINT_CLOUD_UNREACHABLE),
        {"degraded": True},
    ),
    (
        "cloud hint not allowed by an edge-only model",
        R(placement="cloud"),
        [GW, CLOUD],
        EDGE_ONLY,
        (Placement.EDGE, "gw", Reason.POLICY_EDGE_ONLY),
        {"excluded": {"cloud": Exclusion.POLICY}},
    ),
    (
        "edge-only even when the cloud is faster",
        R(),
        [replace(GW, predicted_ms=90), CLOUD],
        EDGE_ONLY,
        (Placement.EDGE, "gw", Reason.POLICY_EDGE_ONLY),
        {},
    ),
    (
        "edge-only prefers a peer to nothing",
        R(),
        [NO_MODEL, SRV, CLOUD],
        EDGE_ONLY,
        (Placement.PEER, "srv", Reason.POLICY_EDGE_ONLY),
        {},
    ),
    (
        "edge-only with no model on site",
        R(),
        [NO_MODEL, CLOUD],
        EDGE_ONLY,
        (Placement.NONE, None, Reason.POLICY_EDGE_ONLY_NO_MODEL),
        {},
    ),
    (
        "cloud-only",
        R(),
        [GW, CLOUD],
        CLOUD_ONLY,
        (Placement.CLOUD, "cloud", Reason.POLICY_CLOUD_ONLY),
        {"fallback_target": "gw"},
    ),
    (
        "cloud-only, cloud down: edge answers degraded",
        R(),
        [GW, DOWN],
        CLOUD_ONLY,
        (Placement.EDGE, "gw", Reason.POLICY_CLOUD_ONLY_UNREACHABLE),
        {"degraded": True},
    ),
    (
        "cloud-only, nothing anywhere",
        R(),
        [NO_MODEL, DOWN],
        CLOUD_ONLY,
        (Placement.NONE, None, Reason.NOTHING_AVAILABLE),
        {},
    ),
    (
        "latency: the free edge meets the budget",
        R(latency_budget_ms=20),
        [GW, CLOUD],
        LATENCY,
        (Placement.EDGE, "gw", Reason.CHEAPEST_IN_BUDGET),
        {"budget_ms": 20},
    ),
    (
        "latency: cheapest in budget beats fastest",
        R(latency_budget_ms=100),
        [replace(GW, predicted_ms=80), replace(CLOUD, predicted_ms=30)],
        LATENCY,
        (Placement.EDGE, "gw", Reason.CHEAPEST_IN_BUDGET),
        {},
    ),
    (
        "latency: only the cloud meets the budget",
        R(latency_budget_ms=50),
        [replace(GW, predicted_ms=90), replace(CLOUD, predicted_ms=40)],
        LATENCY,
        (Placement.CLOUD, "cloud", Reason.CHEAPEST_IN_BUDGET),
        {"fallback_target": "gw"},
    ),
    (
        "latency: cost tie broken by edge energy",
        R(latency_budget_ms=100),
        [
            replace(GW, predicted_ms=50, energy_j_per_call=2),
            replace(SRV, predicted_ms=20, energy_j_per_call=1),
            replace(CLOUD, predicted_ms=10),
        ],
        LATENCY,
        (Placement.PEER, "srv", Reason.CHEAPEST_IN_BUDGET),
        {},
    ),
    (
        "latency: cloud cost ranks cheaper clouds first",
        R(latency_budget_ms=100),
        [
            NO_MODEL,
            replace(CLOUD, id="eu", cost_per_call=2e-3, predicted_ms=20),
            replace(CLOUD, id="us", predicted_ms=70),
        ],
        LATENCY,
        (Placement.CLOUD, "us", Reason.EDGE_MODEL_MISSING),
        {},
    ),
    (
        "latency: none meets the budget, the fastest",
        R(latency_budget_ms=1),
        [GW, CLOUD],
        LATENCY,
        (Placement.EDGE, "gw", Reason.NONE_IN_BUDGET),
        {},
    ),
    (
        "latency: no budget, the fastest",
        R(),
        [replace(GW, predicted_ms=80), CLOUD],
        LATENCY,
        (Placement.CLOUD, "cloud", Reason.FASTEST),
        {"fallback": Placement.EDGE},
    ),
    (
        "latency: the policy's budget applies when the request has none",
        R(),
        [replace(GW, predicted_ms=80), replace(CLOUD, predicted_ms=40)],
        ModelPolicy(latency_budget_ms=100),
        (Placement.EDGE, "gw", Reason.CHEAPEST_IN_BUDGET),
        {"budget_ms": 100},
    ),
    (
        "latency: the request's budget overrides the policy's",
        R(latency_budget_ms=50),
        [replace(GW, predicted_ms=80), replace(CLOUD, predicted_ms=40)],
        ModelPolicy(latency_budget_ms=100),
        (Placement.CLOUD, "cloud", Reason.CHEAPEST_IN_BUDGET),
        {"budget_ms": 50},
    ),
    (
        "thin gateway hands a heavy model to its site server before the cloud",
        R(latency_budget_ms=100),
        [NO_MODEL, SRV, CLOUD],
        LATENCY,
        (Placement.PEER, "srv", Reason.EDGE_MODEL_MISSING),
        {"excluded": {"gw": Exclusion.MODEL_MISSING}},
    ),
    (
        "a model that needs an accelerator skips the gateway",
        R(),
        [replace(GW, variant="big"), SRV, CLOUD],
        ModelPolicy(needs=Requirements(accelerator="cuda")),
        (Placement.PEER, "srv", Reason.EDGE_INCAPABLE),
        {"excluded": {"gw": Exclusion.NO_ACCELERATOR, "cloud": Exclusion.NO_ACCELERATOR}},
    ),
    (
        "a model that needs memory skips a full node",
        R(),
        [replace(GW, memory_free_mb=100), CLOUD],
        ModelPolicy(needs=Requirements(min_memory_mb=512)),
        (Placement.CLOUD, "cloud", Reason.EDGE_INCAPABLE),
        {"excluded": {"gw": Exclusion.LOW_MEMORY}},
    ),
    (
        "the wrong variant is never chosen",
        R(),
        [GW, SRV],
        ModelPolicy(needs=Requirements(variants=("big",))),
        (Placement.PEER, "srv", Reason.EDGE_MODEL_MISSING),
        {"excluded": {"gw": Exclusion.WRONG_VARIANT}},
    ),
    (
        "a present but unloaded model is never chosen",
        R(),
        [replace(GW, loaded=False), CLOUD],
        LATENCY,
        (Placement.CLOUD, "cloud", Reason.EDGE_MODEL_MISSING),
        {"excluded": {"gw": Exclusion.MODEL_NOT_LOADED}},
    ),
    (
        "an unhealthy model is never chosen",
        R(),
        [replace(GW, healthy=False), CLOUD],
        LATENCY,
        (Placement.CLOUD, "cloud", Reason.EDGE_INCAPABLE),
        {"excluded": {"gw": Exclusion.UNHEALTHY}},
    ),
    (
        "overloaded edge offloads to its peer",
        R(latency_budget_ms=100),
        [BUSY, SRV, CLOUD],
        LATENCY,
        (Placement.PEER, "srv", Reason.OFFLOAD_OVERLOADED),
        {"excluded": {"gw": Exclusion.OVERLOADED}, "fallback_target": "gw"},
    ),
    (
        "overloaded edge offloads to the cloud",
        R(),
        [BUSY, CLOUD],
        LATENCY,
        (Placement.CLOUD, "cloud", Reason.OFFLOAD_OVERLOADED),
        {"fallback_target": "gw"},
    ),
    (
        "overloaded edge, nowhere else allowed: it queues",
        R(),
        [BUSY, DOWN],
        LATENCY,
        (Placement.EDGE, "gw", Reason.OVERLOADED_NO_OFFLOAD),
        {},
    ),
    (
        "overloaded edge, restricted data: offload stays on site",
        R(data_class="restricted"),
        [BUSY, SRV, CLOUD],
        LATENCY,
        (Placement.PEER, "srv", Reason.RESTRICTED_DATA),
        {},
    ),
    (
        "cloud down: edge answers, flagged",
        R(),
        [replace(GW, predicted_ms=500), replace(DOWN, predicted_ms=1)],
        LATENCY,
        (Placement.EDGE, "gw", Reason.CLOUD_UNREACHABLE),
        {"degraded": True},
    ),
    (
        "unmeasured cloud: the edge",
        R(),
        [GW, replace(CLOUD, predicted_ms=None)],
        LATENCY,
        (Placement.EDGE, "gw", Reason.NO_CLOUD_ESTIMATE),
        {},
    ),
    (
        "nothing available",
        R(),
        [NO_MODEL, DOWN],
        LATENCY,
        (Placement.NONE, None, Reason.NOTHING_AVAILABLE),
        {},
    ),
    (
        "no candidates at all",
        R(),
        [],
        LATENCY,
        (Placement.NONE, None, Reason.NOTHING_AVAILABLE),
        {},
    ),
    (
        "cascade: edge first, cloud on doubt",
        R(),
        [GW, CLOUD],
        CASCADE,
        (Placement.EDGE, "gw", Reason.CASCADE),
        {"escalate_to": "cloud", "degraded": False},
    ),
    (
        "cascade: cloud down, the edge answer is final",
        R(),
        [GW, DOWN],
        CASCADE,
        (Placement.EDGE, "gw", Reason.CASCADE_NO_ESCALATION),
        {"escalate_to": None, "degraded": True},
    ),
    (
        "cascade: no model on site goes straight to the cloud",
        R(),
        [NO_MODEL, CLOUD],
        CASCADE,
        (Placement.CLOUD, "cloud", Reason.CASCADE_NO_EDGE_MODEL),
        {"escalate_to": None},
    ),
    (
        "cascade: overloaded edge runs the first stage on its peer",
        R(),
        [BUSY, SRV, CLOUD],
        CASCADE,
        (Placement.PEER, "srv", Reason.CASCADE),
        {"escalate_to": "cloud", "fallback_target": "gw"},
    ),
    (
        "cascade: nothing",
        R(),
        [NO_MODEL, DOWN],
        CASCADE,
        (Placement.NONE, None, Reason.NOTHING_AVAILABLE),
        {},
    ),
]


@pytest.mark.parametrize(
    ("request_", "candidates", "policy", "expected", "extra"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_policy_rules(request_, candidates, policy, expected, extra):
    d = place(request_, candidates, policy)
    assert (d.placement, d.target, d.reason) == expected
    for key, value in extra.items():
        if key == "excluded":
            for cid, why in value.items():
                assert d.excluded[cid] is why
        else:
            assert getattr(d, key) == value, key
    assert set(d.estimates_ms) == {c.id for c in candidates}, "the estimates used travel along"


# --- properties -----------------------------------------------------------------------------

candidate_st = st.builds(
    Candidate,
    id=st.just(""),
    tier=st.sampled_from(list(Tier)),
    variant=st.sampled_from([None, "small", "big"]),
    loaded=st.booleans(),
    healthy=st.booleans(),
    memory_free_mb=st.sampled_from([0.0, 256.0, float("inf")]),
    accelerator=st.sampled_from([None, "cuda"]),
    queue_depth=st.integers(0, 20),
    queue_budget=st.sampled_from([None, 0, 5]),
    predicted_ms=st.one_of(st.none(), st.floats(0, 1000)),
    cost_per_call=st.sampled_from([0.0, 1e-3, 1e-2]),
    energy_j_per_call=st.floats(0, 10),
)
candidates_st = st.lists(candidate_st, max_size=6).map(
    lambda cs: [replace(c, id=f"c{i}") for i, c in enumerate(cs)]
)
policy_st = st.builds(
    ModelPolicy,
    kind=st.sampled_from(list(PolicyKind)),
    latency_budget_ms=st.one_of(st.none(), st.floats(1, 500)),
    needs=st.builds(
        Requirements,
        variants=st.sampled_from([(), ("big",)]),
        accelerator=st.sampled_from([None, "cuda"]),
        min_memory_mb=st.sampled_from([0.0, 512.0]),
    ),
)
request_st = st.builds(
    RequestFacts,
    data_class=st.sampled_from(["public", "internal", "personal", "restricted"]),
    latency_budget_ms=st.one_of(st.none(), st.floats(1, 500)),
    placement=st.sampled_from(["auto", "edge", "cloud"]),
)


@settings(max_examples=400, deadline=None)
@given(request_st, candidates_st, policy_st)
def test_restricted_data_never_reaches_the_cloud(request_, candidates, policy):
    d = place(replace(request_, data_class="restricted"), candidates, policy)
    by_id = {c.id: c for c in candidates}
    assert d.placement is not Placement.CLOUD and d.fallback is not Placement.CLOUD
    for cid in (d.target, d.fallback_target, d.escalate_to):
        assert cid is None or by_id[cid].on_site


@settings(max_examples=400, deadline=None)
@given(request_st, candidates_st, policy_st)
def test_place_is_total_and_only_picks_capable_allowed_candidates(request_, candidates, policy):
    d = place(request_, candidates, policy)
    by_id = {c.id: c for c in candidates}
    assert isinstance(d.reason, Reason)
    assert (d.placement is Placement.NONE) == (d.target is None)
    for cid in (d.target, d.fallback_target, d.escalate_to):
        if cid is not None:
            assert incapable(by_id[cid], policy.needs) is None, "missing/unhealthy never chosen"
            if policy.kind is PolicyKind.EDGE_ONLY or request_.placement == "edge":
                assert by_id[cid].on_site
    if d.target is not None:
        assert d.target not in d.excluded or d.excluded[d.target] is Exclusion.OVERLOADED
    if d.escalate_to is not None:
        assert policy.kind is PolicyKind.CASCADE and d.escalate_to != d.target
