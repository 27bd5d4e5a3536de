"""Per-model placement policy over any number of candidates: ``place``.

Hard rules first, always, in this order:
1. restricted data never leaves the site (no cloud candidate, whatever else is asked);
2. the model's policy (``edge-only`` never uses the cloud) and the request's explicit placement
   hint (``edge``: on site only; ``cloud``: the cloud, on-site answer only as a degraded
   fallback) are honoured where rule 1 allows;
3. a candidate whose model is missing, not loaded, of the wrong variant, unhealthy or
   unreachable, or lacking the accelerator or memory the model needs, is never chosen;
4. an overloaded candidate (queue beyond its budget) is passed over whenever anything else is
   allowed.
Then the policy kind decides among what is left:
- ``latency``: with a budget, the cheapest candidate predicted to meet it (cost per call, then
  edge energy, then latency, then nearest tier); without one, the fastest (ties the same way);
  when none meets the budget, the fastest.
- ``edge-only`` / ``cloud-only``: that side, by the same ranking.
- ``cascade``: run on site, escalate to the best cloud candidate when the edge is unsure
  (``ModelPolicy.cascade`` holds the measure and threshold).
Every ``Decision`` names its reason, the budget applied, every candidate's estimate and why
each excluded candidate was excluded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hybridai.orchestrator.candidates import (
    TIER_ORDER,
    Candidate,
    Exclusion,
    Requirements,
    Tier,
    incapable,
    ranked_latency,
)
from hybridai.orchestrator.cascade import CascadeRule
from hybridai.orchestrator.placement import Decision, Placement, Reason
from hybridai.protocol.placement import PolicyKind
from hybridai.protocol.policy import DataClass
from hybridai.protocol.v2 import PlacementHint


@dataclass(frozen=True)
class ModelPolicy:
    """How one model is placed; ``latency_budget_ms`` applies when a request names none."""

    kind: PolicyKind = PolicyKind.LATENCY
    latency_budget_ms: float | None = None
    needs: Requirements = field(default_factory=Requirements)
    cascade: CascadeRule = field(default_factory=CascadeRule)


@dataclass(frozen=True)
class RequestFacts:
    """What one request asks for (the v2 request's ``parameters``) and which model."""

    model: str = ""
    data_class: DataClass = "internal"
    latency_budget_ms: float | None = None
    placement: PlacementHint = "auto"


_PLACEMENT = {Tier.LOCAL: Placement.EDGE, Tier.PEER: Placement.PEER, Tier.CLOUD: Placement.CLOUD}
_MODEL_ABSENT = {Exclusion.MODEL_MISSING, Exclusion.MODEL_NOT_LOADED, Exclusion.WRONG_VARIANT}


def _fastest_key(c: Candidate) -> tuple[float, float, float, int]:
    return (ranked_latency(c), c.cost_per_call, c.energy_j_per_call, TIER_ORDER[c.tier])


def _cheapest_key(c: Candidate) -> tuple[float, float, float, int]:
    return (c.cost_per_call, c.energy_j_per_call, ranked_latency(c), TIER_ORDER[c.tier])


def pick(pool: Sequence[Candidate], budget_ms: float | None) -> tuple[Candidate, Reason]:
    """The latency rule over a non-empty pool: cheapest within budget, else fastest."""
    if budget_ms is None:
        return min(pool, key=_fastest_key), Reason.FASTEST
    fits = [c for c in pool if ranked_latency(c) <= budget_ms]
    if fits:
        return min(fits, key=_cheapest_key), Reason.CHEAPEST_IN_BUDGET
    return min(pool, key=_fastest_key), Reason.NONE_IN_BUDGET


@dataclass
class _Sorting:
    """Candidates split by the hard rules (a private scratchpad of one ``place`` call)."""

    on_site: list[Candidate] = field(default_factory=list)
    cloud: list[Candidate] = field(default_factory=list)
    excluded: dict[str, Exclusion] = field(default_factory=dict)
    cloud_down: bool = False  # a cloud candidate was allowed but is unhealthy or unreachable
    offloaded: bool = False

    def without_overloaded(self, pool: list[Candidate]) -> list[Candidate]:
        """Drop overloaded candidates unless that would leave nothing."""
        ready = [c for c in pool if not c.overloaded]
        if not ready or len(ready) == len(pool):
            return pool
        for c in pool:
            if c.overloaded:
                self.excluded[c.id] = Exclusion.OVERLOADED
                self.offloaded = True
        return ready


def _sort(request: RequestFacts, candidates: Sequence[Candidate], policy: ModelPolicy) -> _Sorting:
    s = _Sorting()
    for c in candidates:
        if not c.on_site and request.data_class == "restricted":
            s.excluded[c.id] = Exclusion.LEAVES_SITE
        elif not c.on_site and policy.kind is PolicyKind.EDGE_ONLY:
            s.excluded[c.id] = Exclusion.POLICY
        elif not c.on_site and request.placement == "edge":
            s.excluded[c.id] = Exclusion.HINT
        elif (why := incapable(c, policy.needs)) is not None:
            s.excluded[c.id] = why
            s.cloud_down |= not c.on_site and why is Exclusion.UNHEALTHY
        else:
            (s.on_site if c.on_site else s.cloud).append(c)
    return s


def _decision(
    chosen: Candidate | None,
    reason: Reason,
    s: _Sorting,
    candidates: Sequence[Candidate],
    budget_ms: float | None,
    *,
    fallback: Candidate | None = None,
    escalate_to: Candidate | None = None,
    degraded: bool = False,
) -> Decision:
    return Decision(
        placement=Placement.NONE if chosen is None else _PLACEMENT[chosen.tier],
        reason=reason,
        fallback=None if fallback is None else _PLACEMENT[fallback.tier],
        degraded=degraded,
        target=None if chosen is None else chosen.id,
        fallback_target=None if fallback is None else fallback.id,
        escalate_to=None if escalate_to is None else escalate_to.id,
        budget_ms=budget_ms,
        estimates_ms={c.id: c.predicted_ms for c in candidates},
        excluded=dict(s.excluded),
    )


def _on_site_fallback(s: _Sorting, chosen: Candidate) -> Candidate | None:
    """Where to answer if ``chosen`` (off this node) fails mid-request: this node, else a peer."""
    if chosen.tier is Tier.LOCAL:
        return None
    others = [c for c in s.on_site if c.id != chosen.id]
    return min(others, key=_fastest_key) if others else None


def place(request: RequestFacts, candidates: Sequence[Candidate], policy: ModelPolicy) -> Decision:
    """Choose where one request runs among ``candidates`` under ``policy``; pure and total."""
    budget = request.latency_budget_ms
    if budget is None:
        budget = policy.latency_budget_ms
    s = _sort(request, candidates, policy)

    def on_site(reason: Reason, none_reason: Reason) -> Decision:
        if not s.on_site:
            return _decision(None, none_reason, s, candidates, budget)
        chosen, _ = pick(s.without_overloaded(s.on_site), budget)
        return _decision(
            chosen, reason, s, candidates, budget, fallback=_on_site_fallback(s, chosen)
        )

    if request.data_class == "restricted":
        return on_site(Reason.RESTRICTED_DATA, Reason.RESTRICTED_NO_EDGE_MODEL)
    if request.placement == "edge":
        return on_site(Reason.HINT_EDGE, Reason.HINT_EDGE_NO_MODEL)
    if policy.kind is PolicyKind.EDGE_ONLY:
        return on_site(Reason.POLICY_EDGE_ONLY, Reason.POLICY_EDGE_ONLY_NO_MODEL)

    if request.placement == "cloud" or policy.kind is PolicyKind.CLOUD_ONLY:
        hinted = request.placement == "cloud"
        if s.cloud:
            chosen, _ = pick(s.without_overloaded(s.cloud), budget)
            reason = Reason.HINT_CLOUD if hinted else Reason.POLICY_CLOUD_ONLY
            fallback = min(s.on_site, key=_fastest_key) if s.on_site else None
            return _decision(chosen, reason, s, candidates, budget, fallback=fallback)
        if s.on_site:
            chosen, _ = pick(s.without_overloaded(s.on_site), budget)
            reason = (
                Reason.HINT_CLOUD_UNREACHABLE if hinted else Reason.POLICY_CLOUD_ONLY_UNREACHABLE
            )
            return _decision(chosen, reason, s, candidates, budget, degraded=True)
        return _decision(None, Reason.NOTHING_AVAILABLE, s, candidates, budget)

    if policy.kind is PolicyKind.CASCADE:
        return _cascade(s, candidates, budget)
    return _latency(s, candidates, budget)


def _cascade(s: _Sorting, candidates: Sequence[Candidate], budget: float | None) -> Decision:
    escalation = pick(s.without_overloaded(s.cloud), budget)[0] if s.cloud else None
    if not s.on_site:
        if escalation is None:
            return _decision(None, Reason.NOTHING_AVAILABLE, s, candidates, budget)
        return _decision(escalation, Reason.CASCADE_NO_EDGE_MODEL, s, candidates, budget)
    first, _ = pick(s.without_overloaded(s.on_site), budget)
    if escalation is None:
        return _decision(
            first, Reason.CASCADE_NO_ESCALATION, s, candidates, budget, degraded=s.cloud_down
        )
    return _decision(
        first,
        Reason.CASCADE,
        s,
        candidates,
        budget,
        fallback=_on_site_fallback(s, first),
        escalate_to=escalation,
    )


def _latency(s: _Sorting, candidates: Sequence[Candidate], budget: float | None) -> Decision:
    pool = s.on_site + s.cloud
    if not pool:
        return _decision(None, Reason.NOTHING_AVAILABLE, s, candidates, budget)
    all_overloaded = all(c.overloaded for c in pool)
    pool = s.without_overloaded(pool)
    chosen, reason = pick(pool, budget)
    local = next((c for c in candidates if c.tier is Tier.LOCAL), None)
    degraded = False
    if s.offloaded:
        reason = Reason.OFFLOAD_OVERLOADED
    elif all_overloaded and local is not None and local.id not in s.excluded:
        reason = Reason.OVERLOADED_NO_OFFLOAD
    elif local is not None and chosen.tier is not Tier.LOCAL and local.id in s.excluded:
        absent = s.excluded[local.id] in _MODEL_ABSENT
        reason = Reason.EDGE_MODEL_MISSING if absent else Reason.EDGE_INCAPABLE
    elif s.cloud_down and chosen.on_site:
        reason, degraded = Reason.CLOUD_UNREACHABLE, True
    elif s.cloud and chosen.on_site and all(c.predicted_ms is None for c in s.cloud):
        reason = Reason.NO_CLOUD_ESTIMATE
    fallback = _on_site_fallback(s, chosen)
    return _decision(chosen, reason, s, candidates, budget, fallback=fallback, degraded=degraded)
