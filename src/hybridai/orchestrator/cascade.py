"""Joint inference: answer at the edge, escalate to the cloud model when the edge is unsure.

A confidence measure turns one edge output into a number in 0..1 (higher: surer); a request
escalates when its confidence is below the model's calibrated threshold (see ``calibration``).
Which measure fits depends on the model, so it is chosen per model, in its ``CascadeRule``.

Classifier measures take class probabilities (one row, or a batch of rows):
- ``max_prob``: the top probability, rescaled so that a uniform answer scores 0;
- ``margin``: top minus runner-up, the usual choice for multi-class;
- ``entropy``: 1 - normalised Shannon entropy, which also weighs the tail classes.
Anomaly scores use ``band``: the distance of the score from its decision threshold, relative to
a band around it; a score at the threshold is coin-flip, beyond the band it is sure.
Regression answers use ``spread``: each row holds the model's predicted quantiles (e.g. q10 and
q90) or the answers of an ensemble's members, and confidence is 1 - (max - min) / ``band``, so a
wide interval or a split ensemble escalates first. Whatever the measure, ``confidences`` is the
one function calibration and the live edge both call, so they rank answers identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hybridai.protocol.placement import Measure

FloatArray = npt.NDArray[np.float64]


CLASSIFIER_MEASURES = (Measure.MAX_PROB, Measure.MARGIN, Measure.ENTROPY)


def _rows(probabilities: npt.ArrayLike) -> FloatArray:
    rows = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError("class probabilities must have shape (classes,) or (n, classes>=2)")
    return rows


def max_probability(probabilities: npt.ArrayLike) -> FloatArray:
    """Top probability rescaled to 0 (uniform) .. 1 (certain), per row."""
    rows = _rows(probabilities)
    k = rows.shape[1]
    scaled: FloatArray = np.clip((rows.max(axis=1) - 1.0 / k) / (1.0 - 1.0 / k), 0.0, 1.0)
    return scaled


def margin(probabilities: npt.ArrayLike) -> FloatArray:
    """Top probability minus the runner-up, per row."""
    top2 = np.sort(_rows(probabilities), axis=1)[:, -2:]
    return np.clip(top2[:, 1] - top2[:, 0], 0.0, 1.0)


def entropy_confidence(probabilities: npt.ArrayLike) -> FloatArray:
    """1 - entropy / log(classes), per row: 1 for a one-hot answer, 0 for a uniform one."""
    rows = np.clip(_rows(probabilities), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(rows > 0.0, rows * np.log(rows), 0.0)
    entropy = -terms.sum(axis=1)
    confidence: FloatArray = np.clip(1.0 - entropy / np.log(rows.shape[1]), 0.0, 1.0)
    return confidence


def band_confidence(scores: npt.ArrayLike, threshold: float, band: float) -> FloatArray:
    """|score - threshold| / band, capped at 1: how far an anomaly score is from the call."""
    if band <= 0.0:
        raise ValueError("band must be positive")
    values = np.atleast_1d(np.asarray(scores, dtype=np.float64)).reshape(-1)
    return np.clip(np.abs(values - threshold) / band, 0.0, 1.0)


def spread_confidence(answers: npt.ArrayLike, band: float) -> FloatArray:
    """1 - (max - min) / band per row, floored at 0: a narrow interval or an agreeing ensemble.

    ``answers`` is (n, m): per row, m predicted quantiles or m ensemble members' answers (a 1-D
    array is one row). ``band`` is the spread at which the answer is wholly unsure.
    """
    if band <= 0.0:
        raise ValueError("band must be positive")
    rows = np.atleast_2d(np.asarray(answers, dtype=np.float64))
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError("spread needs at least two answers per row (quantiles or members)")
    width = rows.max(axis=1) - rows.min(axis=1)
    confidence: FloatArray = np.clip(1.0 - width / band, 0.0, 1.0)
    return confidence


_CLASSIFIER = {
    Measure.MAX_PROB: max_probability,
    Measure.MARGIN: margin,
    Measure.ENTROPY: entropy_confidence,
}


def escalate(confidence: float, threshold: float) -> bool:
    """Whether to ask the cloud: strictly less confident than the threshold.

    Strict, so that threshold 0 never escalates and a threshold above 1 always does.
    """
    return confidence < threshold


@dataclass(frozen=True)
class CascadeRule:
    """One model's cascade: its confidence measure and its calibrated threshold.

    For ``Measure.BAND`` the model outputs one anomaly score per row; ``score_threshold`` is
    the score at which it calls an anomaly and ``band`` the half-width of the unsure zone. For
    ``Measure.SPREAD`` ``band`` is the spread at which a regression answer is wholly unsure.
    """

    measure: Measure = Measure.MARGIN
    threshold: float = 0.0  # escalate when confidence < threshold; 0: never
    score_threshold: float = 0.0
    band: float = 1.0

    def confidences(self, output: Any) -> FloatArray:
        """Confidence per row of one model output (probabilities, or anomaly scores)."""
        if self.measure is Measure.BAND:
            return band_confidence(output, self.score_threshold, self.band)
        if self.measure is Measure.SPREAD:
            return spread_confidence(output, self.band)
        return _CLASSIFIER[self.measure](output)

    def confidence(self, output: Any) -> float:
        """The confidence of a whole request: its least confident row decides (1 when empty)."""
        values = self.confidences(output)
        return float(values.min()) if values.size else 1.0
