"""Drift measures and the retraining decision: pure functions over counts and reports.

The population stability index compares the share of observations per bin with the reference
shares the model was trained on; by the usual rule of thumb under 0.1 is stable, 0.1-0.25 a
shift worth watching and above 0.25 a shift that calls for retraining. Edges compute it on
windows of what they serve; the cloud decides with ``retraining_due`` from their reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EPSILON = 1e-4  # a share of 0 would make the index infinite: empty bins count as this


def bin_index(edges: Sequence[float], value: float) -> int:
    """The bin of ``value`` among ``len(edges) + 1`` bins cut at the sorted ``edges``."""
    low, high = 0, len(edges)
    while low < high:
        mid = (low + high) // 2
        if value < edges[mid]:
            high = mid
        else:
            low = mid + 1
    return low


def psi(reference: Sequence[float], counts: Sequence[int]) -> float:
    """Population stability index of observed bin ``counts`` against ``reference`` shares."""
    if len(reference) != len(counts):
        raise ValueError(f"{len(counts)} bins observed, {len(reference)} in the reference")
    total = sum(counts)
    if total == 0:
        return 0.0
    index = 0.0
    for expected, count in zip(reference, counts, strict=True):
        e = max(float(expected), EPSILON)
        o = max(count / total, EPSILON)
        index += (o - e) * math.log(o / e)
    return index


@dataclass(frozen=True)
class RetrainingPolicy:
    """When a model is retrained: thresholds on what its edges report, and a cool-down."""

    mode: str  # "manual", "auto-to-staged", "auto-to-production"
    psi_threshold: float = 0.25
    confidence_shift: float = 0.1  # drop of mean confidence against the reference
    hard_examples: int = 0  # new hard examples that trigger on their own (0: not used)
    min_window: int = 50  # served rows a device needs before its drift counts
    cooldown_s: float = 300.0


@dataclass(frozen=True)
class DriftObservation:
    """One device's latest drift report for the deployed version of a model."""

    device_id: str
    window: int
    psi_max: float
    confidence_shift: float
    hard_examples: int


@dataclass(frozen=True)
class RetrainingDecision:
    retrain: bool
    reason: str


def retraining_due(
    policy: RetrainingPolicy,
    observations: Sequence[DriftObservation],
    now: float,
    last_triggered_at: float | None,
    run_in_progress: bool,
) -> RetrainingDecision:
    """Whether to start a retraining run now, and why (or why not)."""
    if policy.mode == "manual":
        return RetrainingDecision(False, "policy is manual")
    if run_in_progress:
        return RetrainingDecision(False, "a training run of this model is in progress")
    if last_triggered_at is not None and now - last_triggered_at < policy.cooldown_s:
        return RetrainingDecision(False, "cooling down after the last retraining")
    counted = [o for o in observations if o.window >= policy.min_window]
    for o in counted:
        if o.psi_max > policy.psi_threshold:
            return RetrainingDecision(
                True, f"{o.device_id}: feature PSI {o.psi_max:.3f} > {policy.psi_threshold}"
            )
        if o.confidence_shift > policy.confidence_shift:
            return RetrainingDecision(
                True,
                f"{o.device_id}: confidence fell by {o.confidence_shift:.3f} "
                f"> {policy.confidence_shift}",
            )
    hard = sum(o.hard_examples for o in observations)
    if policy.hard_examples and hard >= policy.hard_examples:
        return RetrainingDecision(True, f"{hard} new hard examples >= {policy.hard_examples}")
    return RetrainingDecision(False, "no drift beyond the thresholds")
