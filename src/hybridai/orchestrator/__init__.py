"""Orchestration: pure decision logic over plain-data snapshots. No I/O, no clocks, no threads.

The live edge router and the simulator call the same functions, so what is tested here is what
runs in the field.
"""

from hybridai.orchestrator.breaker import Breaker, BreakerState
from hybridai.orchestrator.calibration import (
    Calibration,
    Curve,
    HeldOutSplit,
    Outcomes,
    Point,
    ValidationSplit,
    apgr,
    cpt,
    curve,
    evaluate,
    fit_quality,
    fit_share,
    oracle,
    pgr_at,
)
from hybridai.orchestrator.candidates import Candidate, Exclusion, Requirements, Tier
from hybridai.orchestrator.cascade import CascadeRule, Measure, escalate
from hybridai.orchestrator.estimators import EdgeEstimate, Estimate, Ewma, LinkEstimate, Window
from hybridai.orchestrator.placement import Decision, Hints, Placement, Reason, Snapshot, decide
from hybridai.orchestrator.policy import ModelPolicy, PolicyKind, RequestFacts, place, two_tier

__all__ = [
    "Breaker",
    "BreakerState",
    "Calibration",
    "Candidate",
    "CascadeRule",
    "Curve",
    "Decision",
    "EdgeEstimate",
    "Estimate",
    "Ewma",
    "Exclusion",
    "HeldOutSplit",
    "Hints",
    "LinkEstimate",
    "Measure",
    "ModelPolicy",
    "Outcomes",
    "Placement",
    "Point",
    "PolicyKind",
    "Reason",
    "RequestFacts",
    "Requirements",
    "Snapshot",
    "Tier",
    "ValidationSplit",
    "Window",
    "apgr",
    "cpt",
    "curve",
    "decide",
    "escalate",
    "evaluate",
    "fit_quality",
    "fit_share",
    "oracle",
    "pgr_at",
    "place",
    "two_tier",
]
