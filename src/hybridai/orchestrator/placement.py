"""The placement decision: where one inference request runs, and why.

The vocabulary of ``hybridai.orchestrator.policy.place``: where a request goes, the reason
(every decision names one, so operators can audit it) and what the choice was based on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from hybridai.orchestrator.candidates import Exclusion


class Placement(StrEnum):
    EDGE = "edge"  # this node
    PEER = "peer"  # another node of the same site
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
    NO_CLOUD_ESTIMATE = "no_cloud_estimate_yet"
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
class Decision:
    """Where a request runs, why, and what the choice was based on."""

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
