"""Cascade threshold calibration, and the quality vs cloud-share curve it trades along.

Inputs are per-example outcomes of one data split: the edge model's confidence, the edge's
quality (1/0 correctness, or any per-example score) and the cloud's. Escalating the least
confident examples first traces the curve from "edge only" (share 0) to "cloud only" (share 1).

Thresholds are fitted on a ``ValidationSplit`` only; a ``HeldOutSplit`` can be evaluated but the
fit functions refuse it (by type and at run time), so test data cannot leak into a threshold.

Router metrics follow RouteLLM (Ong et al., 2024, and its ``evals/evaluate.py``):
- PGR (performance gap recovered) at an operating point = (quality - edge) / (cloud - edge);
- CPT(x) = the cloud share needed to reach PGR x, by linear interpolation along the curve
  (we take the first crossing, which equals RouteLLM's ``np.interp`` on monotone curves);
- APGR = the area under PGR vs cloud share over 0..1, by the trapezoid rule (RouteLLM's
  ``(AUC - weak_AUC) / (strong_AUC - weak_AUC)``), here over every achievable operating point
  rather than ten. A random router scores 0.5, a perfect one close to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per-example outcomes of one split; arrays of equal length, at least one example."""

    confidence: FloatArray
    edge_quality: FloatArray
    cloud_quality: FloatArray

    def __post_init__(self) -> None:
        raw = (self.confidence, self.edge_quality, self.cloud_quality)
        arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in raw]
        if len({a.size for a in arrays}) != 1 or arrays[0].size == 0:
            raise ValueError(
                "confidence, edge_quality and cloud_quality need one equal, non-zero length"
            )
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("outcomes must be finite")
        for name, array in zip(
            ("confidence", "edge_quality", "cloud_quality"), arrays, strict=True
        ):
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return int(self.confidence.size)


class ValidationSplit(Outcomes):
    """The split thresholds are fitted on."""


class HeldOutSplit(Outcomes):
    """The test split: evaluated and reported, never fitted on."""


@dataclass(frozen=True)
class Point:
    """One operating point of a cascade: escalate when confidence < ``threshold``."""

    threshold: float
    cloud_share: float
    quality: float


@dataclass(frozen=True)
class Calibration:
    """A fitted threshold and what it achieved on the validation split."""

    threshold: float
    cloud_share: float  # on validation
    quality: float  # on validation
    met: bool = True  # False: the target quality is out of reach, best quality chosen


@dataclass(frozen=True, eq=False)
class Curve:
    """Every achievable operating point of one split, cloud share ascending from 0 to 1."""

    thresholds: FloatArray
    shares: FloatArray
    qualities: FloatArray

    @property
    def edge_quality(self) -> float:
        return float(self.qualities[0])

    @property
    def cloud_quality(self) -> float:
        return float(self.qualities[-1])

    @property
    def gap(self) -> float:
        return self.cloud_quality - self.edge_quality

    def pgr(self) -> FloatArray:
        """Performance gap recovered at each point (NaN everywhere when there is no gap)."""
        if self.gap <= 0.0:
            return np.full_like(self.qualities, np.nan)
        return (self.qualities - self.edge_quality) / self.gap

    def points(self) -> list[Point]:
        return [
            Point(float(t), float(s), float(q))
            for t, s, q in zip(self.thresholds, self.shares, self.qualities, strict=True)
        ]


def curve(split: Outcomes) -> Curve:
    """Quality vs cloud share, escalating the least confident first.

    Examples with equal confidence escalate together (a threshold cannot split them), so each
    point sits on a boundary between distinct confidences; its threshold is the midpoint, which
    leaves the most room either side when applied to new data (-inf: never, inf: always).
    """
    order = np.argsort(split.confidence, kind="stable")
    conf = split.confidence[order]
    n = len(split)
    starts = np.flatnonzero(np.diff(conf) > 0.0) + 1
    counts = np.concatenate(([0], starts, [n]))
    gain = np.concatenate(
        ([0.0], np.cumsum(split.cloud_quality[order] - split.edge_quality[order]))
    )
    qualities = (split.edge_quality.sum() + gain[counts]) / n
    midpoints = (conf[starts - 1] + conf[starts]) / 2.0
    thresholds = np.concatenate(([-math.inf], midpoints, [math.inf]))
    return Curve(thresholds, counts / n, qualities)


def evaluate(split: Outcomes, threshold: float) -> Point:
    """The cloud share and quality a threshold gives on ``split`` (any split: this only reads)."""
    escalated = split.confidence < threshold
    quality = np.where(escalated, split.cloud_quality, split.edge_quality).mean()
    return Point(threshold, float(escalated.mean()), float(quality))


def _validation(split: Outcomes) -> ValidationSplit:
    if not isinstance(split, ValidationSplit):
        raise TypeError(
            f"thresholds are fitted on a ValidationSplit only, not {type(split).__name__}"
        )
    return split


def fit_share(split: ValidationSplit, target_cloud_share: float) -> Calibration:
    """The threshold whose validation cloud share is nearest the target (ties: fewer calls)."""
    if not 0.0 <= target_cloud_share <= 1.0:
        raise ValueError("target_cloud_share must be within 0..1")
    c = curve(_validation(split))
    best = int(np.argmin(np.abs(c.shares - target_cloud_share)))  # first = smallest share
    return Calibration(float(c.thresholds[best]), float(c.shares[best]), float(c.qualities[best]))


def fit_quality(split: ValidationSplit, target_quality: float) -> Calibration:
    """The fewest cloud calls that reach ``target_quality`` on validation.

    When no threshold reaches it, the best-quality point is returned with ``met=False``, so the
    caller sees the target is unreachable rather than getting a silent all-cloud policy.
    """
    c = curve(_validation(split))
    reaching = np.flatnonzero(c.qualities >= target_quality)
    if reaching.size:
        i = int(reaching[0])
        return Calibration(float(c.thresholds[i]), float(c.shares[i]), float(c.qualities[i]))
    i = int(np.argmax(c.qualities))
    return Calibration(float(c.thresholds[i]), float(c.shares[i]), float(c.qualities[i]), met=False)


def cpt(c: Curve, recovered: float) -> float:
    """CPT: the cloud share at which the curve first recovers ``recovered`` (0..1) of the gap.

    Linear interpolation between operating points; NaN when there is no gap to recover.
    """
    pgr = c.pgr()
    if np.isnan(pgr).all():
        return math.nan
    hits = np.flatnonzero(pgr >= recovered)
    if not hits.size:
        return math.nan
    i = int(hits[0])
    if i == 0:
        return float(c.shares[0])
    s0, s1, p0, p1 = c.shares[i - 1], c.shares[i], pgr[i - 1], pgr[i]
    return float(s0 + (recovered - p0) / (p1 - p0) * (s1 - s0))


def apgr(c: Curve) -> float:
    """APGR: the area under PGR vs cloud share (trapezoid rule); NaN when there is no gap."""
    pgr = c.pgr()
    if np.isnan(pgr).all():
        return math.nan
    return float(np.trapezoid(pgr, c.shares))


def oracle(split: Outcomes) -> Point:
    """The best any router could do: escalate exactly where the cloud answers better."""
    better = split.cloud_quality > split.edge_quality
    quality = np.maximum(split.cloud_quality, split.edge_quality).mean()
    return Point(math.nan, float(better.mean()), float(quality))
