"""The deferral rule: escalate by the edge's own confidence, or by a learned router's.

A learned router (learning-to-defer's rejector, RouteLLM's router) reads a feature row built
here from the request's input and the edge model's class probabilities, and answers
P(edge right). The router itself runs at the edge (ONNX Runtime); only its number crosses into
this pure rule, which escalates when it is below the router's calibrated threshold, exactly as
the plain rule escalates when the edge's confidence is below its own. Which of the two a
model uses is chosen on its validation split: the router only when its APGR there is higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hybridai.orchestrator.cascade import entropy_confidence, escalate, margin, max_probability
from hybridai.protocol.deferral import DeferralMethod

FloatArray = npt.NDArray[np.float64]
EXTRA_FEATURES = 3  # max_prob, margin, entropy


def router_width(n_inputs: int, n_classes: int) -> int:
    """How many values a router's feature row holds."""
    return n_inputs + n_classes + EXTRA_FEATURES


def router_features(inputs: npt.ArrayLike, probabilities: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """One feature row per example: input, class probabilities, max_prob, margin, entropy.

    ``inputs`` has shape (n, d) (or (d,)), ``probabilities`` (n, k) (or (k,)), same n.
    """
    x = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    p = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] != p.shape[0]:
        raise ValueError(f"{x.shape[0]} input rows but {p.shape[0]} rows of probabilities")
    columns = (
        x,
        p,
        max_probability(p)[:, None],
        margin(p)[:, None],
        entropy_confidence(p)[:, None],
    )
    return np.concatenate(columns, axis=1).astype(np.float32)


@dataclass(frozen=True)
class Deferral:
    """One request's escalation decision and the rule that made it."""

    escalate: bool
    method: DeferralMethod
    score: float  # the confidence the deciding rule compared with its threshold
    threshold: float


def decide(
    method: DeferralMethod,
    confidence: float,
    threshold: float,
    router_confidence: float | None = None,
    router_threshold: float = 0.0,
) -> Deferral:
    """Escalate by the router when it is the method and it answered, else by the threshold.

    A router that did not answer (none shipped, refused, failed) leaves the decision to the
    edge's own confidence, so a cascade never stops cascading for want of its router.
    """
    if method is DeferralMethod.ROUTER and router_confidence is not None:
        return Deferral(
            escalate(router_confidence, router_threshold),
            DeferralMethod.ROUTER,
            router_confidence,
            router_threshold,
        )
    return Deferral(
        escalate(confidence, threshold), DeferralMethod.THRESHOLD, confidence, threshold
    )


def choose(apgr: dict[DeferralMethod, float]) -> DeferralMethod:
    """The router only when its validation APGR is strictly higher than the threshold's."""
    router = apgr.get(DeferralMethod.ROUTER, math.nan)
    plain = apgr.get(DeferralMethod.THRESHOLD, math.nan)
    if math.isnan(router):
        return DeferralMethod.THRESHOLD
    if math.isnan(plain) or router > plain:
        return DeferralMethod.ROUTER
    return DeferralMethod.THRESHOLD
