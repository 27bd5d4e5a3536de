"""One policy, two worlds: the live router's state and the pure knowledge functions agree.

The live wrapper (``edge.routing.placement_state``) and the simulator's way of keeping
knowledge (frozen values changed by ``orchestrator.knowledge``) are fed the same observation
sequence; after every step they must offer the same candidates and ``place`` must decide the
same, reason and estimates included.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridai.edge.routing.placement_state import PeerState, PlacementState, to_placing
from hybridai.orchestrator import Breaker, Decision, LinkEstimate, RequestFacts, place
from hybridai.orchestrator import knowledge as kb
from hybridai.protocol.placement import PlacementPolicy, SitePeer

MODEL = "pm"
PEER = "server-1"

# (kind, numbers) steps, as the live router and the simulator each see them
Step = tuple[str, float, float]

STEP = st.tuples(
    st.sampled_from(
        [
            "start",
            "finish",
            "served",
            "cloud_ok",
            "cloud_fail",
            "probe_ok",
            "probe_fail",
            "peer_ok",
            "peer_fail",
            "tick",
        ]
    ),
    st.floats(0.1, 400.0),
    st.floats(0.0, 200_000.0),
)


@dataclass
class Pure:
    """The simulator's side: frozen values replaced by the pure rules."""

    node: kb.NodeFacts
    load: kb.ModelLoad = field(default_factory=kb.ModelLoad)
    cloud: Breaker = field(default_factory=Breaker)
    peer: kb.PeerView = field(default_factory=lambda: kb.PeerView(PEER))


def _peer_info() -> SitePeer:
    return SitePeer(device_id=PEER, kind="edge-server", url="http://p.lan", models={MODEL: "1"})


def _apply(step: Step, now: float, live: PlacementState, pure: Pure) -> None:
    kind, ms, size = step
    n_bytes = int(size)
    peer = live.peers[PEER]
    if kind == "start":
        live.started(MODEL)
        pure.load = kb.started(pure.load)
    elif kind == "finish":
        live.finished(MODEL)
        pure.load = kb.finished(pure.load)
    elif kind == "served":
        live.served_here(MODEL, ms, ms / 3)
        pure.load = kb.served_here(pure.load, ms, ms / 3)
    elif kind == "cloud_ok":
        live.link.attempt(now)
        live.cloud_answered(MODEL, n_bytes, ms, ms / 4)
        live.link.success()
        pure.cloud = pure.cloud.on_attempt(now).on_success()
        pure.load = kb.cloud_answered(pure.load, n_bytes, ms, ms / 4)
    elif kind == "cloud_fail":
        live.link.attempt(now)
        live.cloud_failed(MODEL, n_bytes, ms)
        live.link.failure(now)
        pure.cloud = pure.cloud.on_attempt(now).on_failure(now)
        pure.load = kb.cloud_failed(pure.load, n_bytes, ms)
    elif kind in ("probe_ok", "probe_fail"):
        ok = kind == "probe_ok"
        live.probed(ms, ok)
        live.link.success() if ok else live.link.failure(now)
        pure.load = kb.probed(pure.load, ms, ok)
        pure.cloud = pure.cloud.on_success() if ok else pure.cloud.on_failure(now)
    elif kind == "peer_ok":
        peer.breaker = peer.breaker.on_success()
        peer.links[MODEL] = peer.links.get(MODEL, LinkEstimate()).observe(n_bytes, ms, ms / 2)
        link = pure.peer.links.get(MODEL, LinkEstimate()).observe(n_bytes, ms, ms / 2)
        pure.peer = kb.PeerView(
            PEER,
            {MODEL: "1"},
            breaker=pure.peer.breaker.on_success(),
            links={**pure.peer.links, MODEL: link},
        )
    elif kind == "peer_fail":
        peer.breaker = peer.breaker.on_failure(now)
        pure.peer = kb.PeerView(
            PEER,
            {MODEL: "1"},
            breaker=pure.peer.breaker.on_failure(now),
            links=pure.peer.links,
        )


def _decide(
    live: PlacementState, pure: Pure, facts: RequestFacts, n_bytes: int, now: float
) -> tuple[Decision, Decision]:
    policy = live.placing_for(MODEL).policy
    live_candidates = live.candidates(MODEL, None, True, n_bytes, now)
    pure_candidates = kb.build_candidates(
        pure.node, pure.load, pure.cloud, MODEL, None, True, n_bytes, now, peers=[pure.peer]
    )
    assert live_candidates == pure_candidates
    return place(facts, live_candidates, policy), place(facts, pure_candidates, policy)


def _pair(kind: str, budget: float | None) -> tuple[PlacementState, Pure]:
    live = PlacementState("edge-1", queue_budget=4, cloud_cost_per_call=0.5)
    spec = {"kind": kind, "latency_budget_ms": budget}
    live.placing[MODEL] = to_placing(PlacementPolicy.model_validate(spec))
    live.peers[PEER] = PeerState(_peer_info())
    live.model(MODEL)  # known, as after its first request: probes refresh it
    node = kb.NodeFacts("edge-1", queue_budget=4, cloud_cost_per_call=0.5, memory_mb=math.inf)
    return live, Pure(node, peer=kb.PeerView(PEER, {MODEL: "1"}))


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(STEP, min_size=1, max_size=60),
    kind=st.sampled_from(["latency", "cascade", "cloud-only", "edge-only"]),
    budget=st.one_of(st.none(), st.floats(5.0, 300.0)),
)
def test_live_and_pure_decide_the_same_after_any_observations(
    steps: list[Step], kind: str, budget: float | None
) -> None:
    live, pure = _pair(kind, budget)
    now = 1000.0
    for step in steps:
        now += step[1] / 100.0  # time moves: breakers cool down
        _apply(step, now, live, pure)
        for n_bytes in (512, 100_000):
            got_live, got_pure = _decide(live, pure, RequestFacts(MODEL), n_bytes, now)
            assert got_live == got_pure


def test_a_long_seeded_sequence_reaches_every_reason_and_agrees_throughout() -> None:
    rng = random.Random(16)
    live, pure = _pair("latency", 60.0)
    kinds = ["start", "finish", "served", "cloud_ok", "cloud_fail", "probe_ok", "peer_ok"]
    reasons = set()
    now = 0.0
    for _ in range(3000):
        now += rng.expovariate(5.0)
        step = (rng.choice(kinds), rng.uniform(1.0, 150.0), rng.uniform(0.0, 50_000.0))
        _apply(step, now, live, pure)
        got_live, got_pure = _decide(live, pure, RequestFacts(MODEL), 2048, now)
        assert got_live == got_pure
        reasons.add((got_live.placement, got_live.reason))
    assert len(reasons) >= 3  # the sequence exercised several branches of the policy


def test_inflight_never_goes_negative_and_probes_do_not_invent_an_rtt() -> None:
    load = kb.finished(kb.ModelLoad())
    assert load.inflight == 0
    assert kb.probed(load, 30.0, ok=False).cloud.rtt_ms.value() is None
    assert kb.probed(load, 30.0, ok=True).cloud.rtt_ms.value() == pytest.approx(30.0)
