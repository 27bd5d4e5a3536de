"""The placement decision: where one inference request runs, and why.

Hard rules come first (data class, explicit hints, model presence, cloud reachability); only
then do latency estimates decide. Every decision names its reason so operators can audit it.

``decide`` is the two-tier (this edge or the cloud) rule the edge router has used since v1;
``hybridai.orchestrator.policy.place`` is its generalisation to any number of candidates (site
peers, several clouds) and per-model policies, and agrees with ``decide`` on two tiers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from hybridai.orchestrator.candidates import Exclusion


class Placement(StrEnum):
    EDGE = "edge"  # this node
    PEER = "peer"  # another node of the same site (``place`` only)
    CLOUD = "cloud"
    NONE = "none"  # nowhere can serve it under the rules: the caller answers 503


class Reason(StrEnum):
    RESTRICTED_DATA = "restricted_data_stays_on_site"
    RESTRICTED_NO_EDGE_MODEL = "restricted_data_but_no_edge_model"
    HINT_EDGE = "placement_hint_edge"
    HINT_EDGE_NO_MODEL = "placement_hint_edge_but_no_edge_model"
    HINT_CLOUD = "placement_hint_cloud"
    HINT_CLOUD_UNREACHABLE = "placement_hint_cloud_but_cloud_unreachable"
    EDGE_MODEL_MISSING = "edge_model_missing"
    CLOUD_UNREACHABLE = "cloud_unreachable"
    NOTHING_AVAILABLE = "no_model_at_edge_and_cloud_unreachable"
    EDGE_FASTER = "edge_lower_estimated_latency"
    CLOUD_FASTER = "cloud_lower_estimated_latency"
    ONLY_EDGE_IN_BUDGET = "only_edge_meets_budget"
    ONLY_CLOUD_IN_BUDGET = "only_cloud_meets_budget"
    NO_CLOUD_ESTIMATE = "no_cloud_estimate_yet"
    # ``place`` (multi-candidate, per-model policy) adds these.
    EDGE_INCAPABLE = "edge_cannot_run_model"
    POLICY_EDGE_ONLY = "policy_edge_only"
    POLICY_EDGE_ONLY_NO_MODEL = "policy_edge_only_but_no_model_on_site"
    POLICY_CLOUD_ONLY = "policy_cloud_only"
    POLICY_CLOUD_ONLY_UNREACHABLE = "policy_cloud_only_but_cloud_unavailable"
    OFFLOAD_OVERLOADED = "edge_overloaded_offloaded"
    OVERLOADED_NO_OFFLOAD = "edge_overloaded_but_nowhere_else_allowed"
    FASTEST = "fastest_estimate_no_budget"
    CHEAPEST_IN_BUDGET = "cheapest_meeting_budget"
    NONE_IN_BUDGET = "none_meets_budget_fastest_chosen"
    CASCADE = "cascade_edge_first"
    CASCADE_NO_ESCALATION = "cascade_edge_answer_final_no_escalation_possible"
    CASCADE_NO_EDGE_MODEL = "cascade_but_no_model_on_site"


@dataclass(frozen=True)
class Hints:
    """What the request asks for (from the v2 request's ``parameters``)."""

    data_class: Literal["public", "internal", "personal", "restricted"] = "internal"
    latency_budget_ms: float | None = None
    placement: Literal["auto", "edge", "cloud"] = "auto"


@dataclass(frozen=True)
class Snapshot:
    """What the router knows at the moment of the request."""

    edge_model_ready: bool
    cloud_reachable: bool
    edge_estimate_ms: float | None = None
    cloud_estimate_ms: float | None = None


@dataclass(frozen=True)
class Decision:
    """Where a request runs, why, and what the choice was based on.

    The fields after ``degraded`` are filled by ``place``; ``decide`` leaves them empty.
    """

    placement: Placement
    reason: Reason
    # Where to go if the chosen placement fails mid-request (cloud call errors): the edge
    # answers instead, flagged degraded. None when there is no safe fallback.
    fallback: Placement | None = None
    degraded: bool = False
    target: str | None = None  # the chosen candidate's id
    fallback_target: str | None = None  # the fallback candidate's id
    # Cascade: run at ``target``, ask this candidate when the answer's confidence is too low.
    escalate_to: str | None = None
    budget_ms: float | None = None  # the latency budget applied (request's, else policy's)
    estimates_ms: Mapping[str, float | None] = field(default_factory=dict)  # per candidate id
    excluded: Mapping[str, Exclusion] = field(default_factory=dict)  # why others were not used


def _edge_fallback(snapshot: Snapshot) -> Placement | None:
    return Placement.EDGE if snapshot.edge_model_ready else None


def decide(hints: Hints, snapshot: Snapshot) -> Decision:
    """Choose edge or cloud for one request; pure and total."""
    edge_ok = snapshot.edge_model_ready
    cloud_ok = snapshot.cloud_reachable

    if hints.data_class == "restricted":
        if edge_ok:
            return Decision(Placement.EDGE, Reason.RESTRICTED_DATA)
        return Decision(Placement.NONE, Reason.RESTRICTED_NO_EDGE_MODEL)

    if hints.placement == "edge":
        if edge_ok:
            return Decision(Placement.EDGE, Reason.HINT_EDGE)
        return Decision(Placement.NONE, Reason.HINT_EDGE_NO_MODEL)

    if hints.placement == "cloud":
        if cloud_ok:
            return Decision(Placement.CLOUD, Reason.HINT_CLOUD, fallback=_edge_fallback(snapshot))
        if edge_ok:
            return Decision(Placement.EDGE, Reason.HINT_CLOUD_UNREACHABLE, degraded=True)
        return Decision(Placement.NONE, Reason.NOTHING_AVAILABLE)

    if not edge_ok:
        if cloud_ok:
            return Decision(Placement.CLOUD, Reason.EDGE_MODEL_MISSING)
        return Decision(Placement.NONE, Reason.NOTHING_AVAILABLE)
    if not cloud_ok:
        return Decision(Placement.EDGE, Reason.CLOUD_UNREACHABLE, degraded=True)

    return _by_latency(hints, snapshot)


def _by_latency(hints: Hints, snapshot: Snapshot) -> Decision:
    edge_ms, cloud_ms = snapshot.edge_estimate_ms, snapshot.cloud_estimate_ms
    if cloud_ms is None:
        # Never measured: the edge costs nothing to try and the cloud gets probed elsewhere.
        return Decision(Placement.EDGE, Reason.NO_CLOUD_ESTIMATE)
    if edge_ms is None:
        edge_ms = 0.0
    budget = hints.latency_budget_ms
    if budget is not None:
        edge_fits, cloud_fits = edge_ms <= budget, cloud_ms <= budget
        if edge_fits and not cloud_fits:
            return Decision(Placement.EDGE, Reason.ONLY_EDGE_IN_BUDGET)
        if cloud_fits and not edge_fits:
            return Decision(Placement.CLOUD, Reason.ONLY_CLOUD_IN_BUDGET, fallback=Placement.EDGE)
    if cloud_ms < edge_ms:
        return Decision(Placement.CLOUD, Reason.CLOUD_FASTER, fallback=Placement.EDGE)
    return Decision(Placement.EDGE, Reason.EDGE_FASTER)
