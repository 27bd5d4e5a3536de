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

from hybridai.orchestrator.cascade import escalate
from hybridai.protocol.deferral import DeferralMethod

FloatArray = npt.NDArray[np.float64]
EXTRA_FEATURES = 3  # max_prob, margin, entropy


def router_width(n_inputs: int, n_classes: int) -> int:
    """How many values a router's feature row holds."""
    return n_inputs + n_classes + EXTRA_FEATURES


def router_features(inputs: npt.ArrayLike, probabilities: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """One feature row per example: input, class probabilities, max_prob, margin, entropy.

    ``inputs`` has shape (n, d) (or (d,)), ``probabilities`` (n, k) (or (k,)), same n. The
    three measures equal ``orchestrator.cascade``'s, computed in one pass: this runs on every
    escalation decision at the edge, where a handful of numpy calls is most of the cost.
    """
    x = np.asarray(inputs, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    x = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
    p = p.reshape(1, -1) if p.ndim == 1 else p
    if x.shape[0] != p.shape[0]:
        raise ValueError(f"{x.shape[0]} input rows but {p.shape[0]} rows of probabilities")
    k = p.shape[1]
    if k < 2:
        raise ValueError("class probabilities must have shape (classes,) or (n, classes>=2)")
    if x.shape[0] == 1:
        return _one_row(x[0].tolist(), p[0].tolist())
    top = np.sort(p, axis=1)[:, -2:]
    out = np.empty((x.shape[0], x.shape[1] + k + EXTRA_FEATURES), dtype=np.float32)
    out[:, : x.shape[1]] = x
    out[:, x.shape[1] : x.shape[1] + k] = p
    out[:, -3] = np.clip((top[:, 1] - 1.0 / k) / (1.0 - 1.0 / k), 0.0, 1.0)
    out[:, -2] = np.clip(top[:, 1] - top[:, 0], 0.0, 1.0)
    q = np.clip(p, 0.0, 1.0)
    entropy = -(q * np.log(np.maximum(q, 1e-300))).sum(axis=1)  # 0 log 0 = 0
    out[:, -1] = np.clip(1.0 - entropy / np.log(k), 0.0, 1.0)
    return out


def _one_row(x: list[float], p: list[float]) -> npt.NDArray[np.float32]:
    """``router_features`` of one request row in plain floats: a third of numpy's time."""
    k = len(p)
    second, top = sorted(p)[-2:]
    q = [min(max(v, 0.0), 1.0) for v in p]
    entropy = -sum(v * math.log(v) for v in q if v > 0.0)
    measures = [
        min(max((top - 1.0 / k) / (1.0 - 1.0 / k), 0.0), 1.0),
        min(max(top - second, 0.0), 1.0),
        min(max(1.0 - entropy / math.log(k), 0.0), 1.0),
    ]
    return np.array([x + p + measures], dtype=np.float32)


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
