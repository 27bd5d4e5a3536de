"""Cascade threshold calibration, and the quality vs cloud-share curve it trades along.

Inputs are per-example outcomes of one data split: the edge model's confidence, the edge's
quality (1/0 correctness, or any per-example score) and the cloud's. Escalating the least
confident examples first traces the curve from "edge only" (share 0) to "cloud only" (share 1).

Thresholds are fitted on a ``ValidationSplit`` only; a ``HeldOutSplit`` can be evaluated but the
fit functions refuse it (by type and at run time), so test data cannot leak into a threshold.

Router metrics follow RouteLLM (Ong et al., 2024, and its ``evals/evaluate.py``):
- PGR (performance gap recovered) at an operating point = (quality - edge) / (cloud - edge);
- CPT(x) = the cloud share needed to reach PGR x: ``np.interp`` of x over the curve (as
  RouteLLM does), after the curve is made monotone by isotonic regression so the inverse is
  defined. The first crossing of the raw per-example curve is biased early on small sets (a
  random walk crosses a level first before its trend does: random routing scored CPT50 ~0.485);
  the isotonic fit is symmetric, so random routing's CPT50 is 0.5 on average;
- quality / PGR "at share s" = the curve interpolated at exactly s (between two thresholds, the
  mix of both that escalates exactly that share), not at whatever share a threshold realises;
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


def isotonic(values: FloatArray, weights: FloatArray | None = None) -> FloatArray:
    """The weighted least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    means: list[float] = []
    mass: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(v.tolist(), w.tolist(), strict=True):
        means.append(value)
        mass.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            total = mass[-2] + mass[-1]
            if total > 0:
                means[-2] = (means[-2] * mass[-2] + means[-1] * mass[-1]) / total
            mass[-2] = total
            sizes[-2] += sizes[-1]
            means.pop()
            mass.pop()
            sizes.pop()
    return np.repeat(np.asarray(means), sizes)


def quality_at(c: Curve, share: float) -> float:
    """The quality at exactly ``share`` (0..1), interpolated between operating points."""
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be within 0..1")
    return float(np.interp(share, c.shares, c.qualities))


def pgr_at(c: Curve, share: float) -> float:
    """The gap recovered at exactly ``share``; NaN when there is no gap."""
    if c.gap <= 0.0:
        return math.nan
    return (quality_at(c, share) - c.edge_quality) / c.gap


def cpt(c: Curve, recovered: float) -> float:
    """CPT: the cloud share at which the curve recovers ``recovered`` (0..1) of the gap.

    ``np.interp`` over the isotonic fit of PGR vs share, on an even grid of shares plus the
    curve's own points, each weighted by the share it spans (not by how many thresholds fall
    there); the
    first share where the fit reaches the level. NaN when there is no gap, or when the curve
    never recovers that much.
    """
    if c.gap <= 0.0:
        return math.nan
    grid = np.union1d(np.linspace(0.0, 1.0, 1001), c.shares)
    span = np.diff(grid)
    weights = np.concatenate(([span[0]], span[:-1] + span[1:], [span[-1]])) / 2.0
    fitted = isotonic((np.interp(grid, c.shares, c.qualities) - c.edge_quality) / c.gap, weights)
    if fitted[-1] < recovered:
        return math.nan
    if fitted[0] >= recovered:
        return 0.0
    first = int(np.searchsorted(fitted, recovered, side="left"))  # fitted[first] >= recovered
    return _cross(grid, fitted, first, recovered)


def _cross(grid: FloatArray, fitted: FloatArray, i: int, level: float) -> float:
    """Where the segment ending at ``i`` reaches ``level`` (``fitted[i - 1] <= level``)."""
    p0, p1 = fitted[i - 1], fitted[i]
    if p1 == p0:
        return float(grid[i])
    return float(grid[i - 1] + (level - p0) / (p1 - p0) * (grid[i] - grid[i - 1]))


def apgr(c: Curve) -> float:
    """APGR: the area under PGR vs cloud share (trapezoid rule); NaN when there is no gap."""
    pgr = c.pgr()
    if np.isnan(pgr).all():
        return math.nan
    return float(np.trapezoid(pgr, c.shares))


def oracle_curve(split: Outcomes) -> Curve:
    """The curve of the router that knows the answers: largest cloud gain escalated first."""
    gain = split.cloud_quality - split.edge_quality
    return curve(Outcomes(-gain, split.edge_quality, split.cloud_quality))


def oracle(split: Outcomes) -> Point:
    """The best any router could do: escalate exactly where the cloud answers better."""
    better = split.cloud_quality > split.edge_quality
    quality = np.maximum(split.cloud_quality, split.edge_quality).mean()
    return Point(math.nan, float(better.mean()), float(quality))
