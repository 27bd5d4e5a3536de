"""Train, choose and export a learned deferral router, on the validation split only.

The router is a small classifier (logistic regression, or gradient-boosted trees: 100 of
depth 3, or 200 of 15 leaves) over ``orchestrator.deferral.router_features`` that predicts
whether the edge model's answer is right. Its validation figures are out of fold: each
validation row is scored by a router fitted on the other folds, so the APGR that decides
between router and plain threshold, and the router threshold calibrated to a target share or
quality, are those of a router that did not see the row (the shipped router is then fitted
on every validation row). The test split is never an argument here.

The export is ONNX (skl2onnx, the opsets the fleet loads), run by ONNX Runtime at the edge; it
is signed like a model artifact (``link.signing``, variant ``protocol.deferral.ROUTER_VARIANT``).
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from hybridai.link.signing import sign_artifact
from hybridai.orchestrator import (
    CascadeRule,
    Measure,
    ValidationSplit,
    apgr,
    curve,
    fit_quality,
    fit_share,
)
from hybridai.orchestrator.calibration import Calibration
from hybridai.orchestrator.cascade import CLASSIFIER_MEASURES
from hybridai.orchestrator.deferral import choose, router_features
from hybridai.protocol.deferral import ROUTER_VARIANT, DeferralMethod, DeferralSpec, RouterSpec
from hybridai.serving.providers import create_session

Array = npt.NDArray[Any]
INPUT_NAME = "input"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MIN_ROWS_PER_CLASS = 10  # fewer edge errors (or right answers) than this: no router to learn
FOLDS = 5


def _families(seed: int) -> dict[str, ClassifierMixin]:
    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "gbm": HistGradientBoostingClassifier(
            max_iter=100, max_depth=3, learning_rate=0.1, l2_regularization=1.0, random_state=seed
        ),
        # Wider trees for an edge whose errors follow the input closely (circles, clusters)
        "gbm-wide": HistGradientBoostingClassifier(
            max_iter=200,
            max_leaf_nodes=15,
            min_samples_leaf=20,
            learning_rate=0.05,
            l2_regularization=1.0,
            random_state=seed,
        ),
    }


@dataclass
class RouterFit:
    """What ``fit_router`` learned, and what both methods score on the validation split."""

    measure: Measure  # the best plain confidence measure on validation
    apgr: dict[DeferralMethod, float]
    method: DeferralMethod  # the chosen one
    family: str | None = None
    model: ClassifierMixin | None = None  # fitted on every validation row
    router_confidence: Array = field(default_factory=lambda: np.zeros(0))  # out of fold
    threshold_confidence: Array = field(default_factory=lambda: np.zeros(0))
    edge_quality: Array = field(default_factory=lambda: np.zeros(0))
    cloud_quality: Array = field(default_factory=lambda: np.zeros(0))
    family_apgr: dict[str, float] = field(default_factory=dict)

    def split(self, method: DeferralMethod) -> ValidationSplit:
        """The validation outcomes as the method scores them (the router's out of fold)."""
        confidence = (
            self.router_confidence if method is DeferralMethod.ROUTER else self.threshold_confidence
        )
        return ValidationSplit(confidence, self.edge_quality, self.cloud_quality)


def _right(model: ClassifierMixin, features: Array) -> Array:
    """P(edge right) per row: the probability of class 1."""
    probabilities = np.asarray(model.predict_proba(features))
    return probabilities[:, list(model.classes_).index(1)]


def _out_of_fold(model: ClassifierMixin, features: Array, right: Array, seed: int) -> Array:
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    scores = np.zeros(len(right))
    for fit_rows, score_rows in folds.split(features, right):
        fitted = clone(model).fit(features[fit_rows], right[fit_rows])
        scores[score_rows] = _right(fitted, features[score_rows])
    return scores


def fit_router(
    inputs: Array,
    edge_probabilities: Array,
    edge_quality: Array,
    cloud_quality: Array,
    seed: int = 0,
) -> RouterFit:
    """Fit the router on validation rows and choose between it and the plain threshold.

    ``edge_quality`` / ``cloud_quality`` are per-row correctness (1/0) of each tier's answer.
    The plain threshold's measure is the best of max_prob, margin and entropy by validation
    APGR; the router's family the best of logistic and gbm by out-of-fold APGR; the router wins
    only with a strictly higher APGR (``orchestrator.deferral.choose``). Runs on one OpenMP
    thread: a few thousand rows gain nothing from more, and on a busy machine spinning OpenMP
    threads made gradient boosting 35x slower.
    """
    with threadpool_limits(limits=1):
        return _fit(inputs, edge_probabilities, edge_quality, cloud_quality, seed)


def _fit(
    inputs: Array, edge_probabilities: Array, edge_quality: Array, cloud_quality: Array, seed: int
) -> RouterFit:
    edge_quality = np.asarray(edge_quality, dtype=np.float64)
    cloud_quality = np.asarray(cloud_quality, dtype=np.float64)
    by_measure = {m: CascadeRule(m).confidences(edge_probabilities) for m in CLASSIFIER_MEASURES}
    measure_apgr = {
        m: apgr(curve(ValidationSplit(c, edge_quality, cloud_quality)))
        for m, c in by_measure.items()
    }
    measure = max(CLASSIFIER_MEASURES, key=lambda m: _comparable(measure_apgr[m]))
    fit = RouterFit(
        measure=measure,
        apgr={DeferralMethod.THRESHOLD: measure_apgr[measure]},
        method=DeferralMethod.THRESHOLD,
        threshold_confidence=by_measure[measure],
        edge_quality=edge_quality,
        cloud_quality=cloud_quality,
    )
    right = (edge_quality >= 1.0).astype(int)
    if min(int(right.sum()), int(len(right) - right.sum())) < MIN_ROWS_PER_CLASS:
        return fit  # too few edge errors (or right answers) on validation to learn from
    features = router_features(inputs, edge_probabilities)
    scores: dict[str, Array] = {}
    for name, model in _families(seed).items():
        scores[name] = _out_of_fold(model, features, right, seed)
        split = ValidationSplit(scores[name], edge_quality, cloud_quality)
        fit.family_apgr[name] = apgr(curve(split))
    family = max(fit.family_apgr, key=lambda f: _comparable(fit.family_apgr[f]))
    fit.family = family
    fit.router_confidence = scores[family]
    fit.apgr[DeferralMethod.ROUTER] = fit.family_apgr[family]
    fit.method = choose(fit.apgr)
    fit.model = clone(_families(seed)[family]).fit(features, right)
    return fit


def _comparable(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def calibrate(
    fit: RouterFit,
    method: DeferralMethod,
    target_cloud_share: float | None = None,
    target_quality: float | None = None,
) -> Calibration:
    """The threshold of ``method`` for a target share or quality, on validation only."""
    if (target_cloud_share is None) == (target_quality is None):
        raise ValueError("give exactly one of target_cloud_share or target_quality")
    if method is DeferralMethod.ROUTER and fit.model is None:
        raise ValueError("no router was learned: too few edge errors on the validation split")
    split = fit.split(method)
    if target_cloud_share is not None:
        return fit_share(split, target_cloud_share)
    assert target_quality is not None
    return fit_quality(split, target_quality)


def export(model: ClassifierMixin, n_features: int) -> bytes:
    """The router as ONNX: input ``input`` (n, features) float32; outputs label, probabilities."""
    onnx_model = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return bytes(onnx_model.SerializeToString())


def run(artifact: bytes, features: Array) -> Array:
    """P(edge right) per row from the exported router, as ONNX Runtime computes it."""
    session = create_session(artifact, label="deferral router", threads=1).session
    probabilities = session.run(["probabilities"], {INPUT_NAME: features.astype(np.float32)})[0]
    return np.asarray(probabilities, dtype=np.float64)[:, 1]


def router_spec(
    artifact: bytes,
    threshold: float,
    n_features: int,
    family: str,
    name: str,
    version: str,
    signing_key: Ed25519PrivateKey | None,
) -> RouterSpec:
    """The router as it ships: inline ONNX, its digest, and a signature like an artifact's."""
    digest = hashlib.sha256(artifact).hexdigest()
    signature = (
        None
        if signing_key is None
        else sign_artifact(signing_key, name, version, ROUTER_VARIANT, digest)
    )
    return RouterSpec(
        onnx=base64.b64encode(artifact).decode(),
        sha256=digest,
        signature=signature,
        threshold=finite(threshold),
        features=n_features,
        family=family,
    )


def deferral_spec(
    fit: RouterFit, router: RouterSpec | None, method: DeferralMethod | None = None
) -> DeferralSpec:
    """What a version ships: the method (the validation choice unless one is named)."""
    chosen = fit.method if method is None else method
    if chosen is DeferralMethod.ROUTER and router is None:
        raise ValueError("the router method needs a router")
    return DeferralSpec(
        method=chosen,
        router=router,
        apgr={m: round(v, 6) for m, v in fit.apgr.items() if not math.isnan(v)},
    )


def finite(threshold: float) -> float:
    """Thresholds beyond every confidence stay finite in JSON: 0 never, 2 always escalates."""
    if math.isinf(threshold):
        return 2.0 if threshold > 0 else 0.0
    return float(threshold)
