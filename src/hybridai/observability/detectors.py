"""Anomaly detectors over one telemetry series: pure functions of arrays of points.

Each detector looks at a history (older points, the baseline) and the newest point(s) and
returns a ``Finding`` when they leave what the history makes normal, else None. No I/O, no
clock: the alert evaluator (``observability.alerting``) and the benchmark (``bench/
operations.py``) call the same functions.

- ``robust_z``: distance from the median in MADs (a spike, the start of a level shift);
  robust to the outliers it looks for, unlike a mean and a standard deviation.
- ``ewma``: EWMA control limits (Roberts 1959): a smoothed mean leaving its band.
- ``seasonal_residuals`` / ``seasonal_period``: a value minus the median of the same phase in
  earlier periods (same minute of the hour, hour of the day) where the series has a period.
- ``cusum``: a two-sided CUSUM (Page 1954) of standardised values: a drift or a small shift
  that no single point shows.
- ``threshold``: a fixed limit (disk use, clock skew, certificate expiry).
``ensemble`` combines them the way the cloud's alerts do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# A series: a list of floats or a numpy array
Points = Sequence[float] | npt.NDArray[np.float64]
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution is 0.6745 sigma
# A floor on the spread, relative to the level: a flat series (a constant backlog of 0) does
# not make every small wobble infinitely many deviations away.
_MIN_SPREAD = 1e-6


@dataclass(frozen=True)
class Finding:
    """Why a detector thinks the newest point is abnormal: the evidence an alert carries."""

    detector: str
    value: float  # the newest point (or the statistic the detector tested)
    baseline: float  # what the history made normal
    score: float  # how far, in the detector's unit (MADs, sigmas, CUSUM sums)
    threshold: float

    def evidence(self) -> dict[str, float | str]:
        return {
            "detector": self.detector,
            "value": round(self.value, 6),
            "baseline": round(self.baseline, 6),
            "score": round(self.score, 3),
            "threshold": self.threshold,
        }


def _spread(values: np.ndarray, centre: float) -> float:
    mad = float(np.median(np.abs(values - centre))) * MAD_TO_SIGMA
    floor = max(_MIN_SPREAD, 1e-3 * abs(centre))
    if mad < floor:  # mostly constant: fall back to the standard deviation, then the floor
        mad = max(float(np.std(values)), floor)
    return mad


def robust_z(history: Points, value: float, threshold: float = 5.0) -> Finding | None:
    """``value`` more than ``threshold`` robust sigmas (1.4826 MAD) from the history's median."""
    past = np.asarray(history, dtype=float)
    if past.size < 5:
        return None
    centre = float(np.median(past))
    z = (value - centre) / _spread(past, centre)
    if abs(z) <= threshold:
        return None
    return Finding("robust_z", value, centre, float(z), threshold)


def ewma(history: Points, value: float, alpha: float = 0.3, width: float = 4.0) -> Finding | None:
    """The EWMA including ``value`` outside ``width`` sigmas of its in-control band.

    The band is the history's robust mean and spread, scaled by the EWMA's asymptotic
    variance ``alpha / (2 - alpha)``.
    """
    past = np.asarray(history, dtype=float)
    if past.size < 5:
        return None
    centre = float(np.median(past))
    sigma = _spread(past, centre)
    smoothed = centre
    for x in past[-10:]:  # the recent run-up, so one lucky point does not reset the mean
        smoothed = alpha * float(x) + (1 - alpha) * smoothed
    smoothed = alpha * value + (1 - alpha) * smoothed
    limit = width * sigma * float(np.sqrt(alpha / (2 - alpha)))
    score = (smoothed - centre) / (sigma * float(np.sqrt(alpha / (2 - alpha))))
    if abs(smoothed - centre) <= limit:
        return None
    return Finding("ewma", smoothed, centre, float(score), width)


def cusum(
    history: Points, recent: Points, drift: float = 0.5, limit: float = 8.0
) -> Finding | None:
    """A two-sided CUSUM over ``recent``, standardised by the history's median and spread.

    ``drift`` (k, in sigmas) is the slack each point is allowed; the sum crossing ``limit``
    (h) is a change: a drift or a small level shift that no single point shows.
    """
    past = np.asarray(history, dtype=float)
    if past.size < 5 or len(recent) == 0:
        return None
    centre = float(np.median(past))
    sigma = _spread(past, centre)
    high = low = 0.0
    for x in recent:
        z = (float(x) - centre) / sigma
        high = max(0.0, high + z - drift)
        low = max(0.0, low - z - drift)
    score = high if high >= low else -low
    if max(high, low) <= limit:
        return None
    return Finding("change_point", float(recent[-1]), centre, float(score), limit)


def threshold(value: float, limit: float, *, above: bool = True) -> Finding | None:
    """A fixed limit: ``value`` above it (or below it, ``above=False``)."""
    crossed = value > limit if above else value < limit
    if not crossed:
        return None
    return Finding("threshold", value, limit, value - limit, limit)


def seasonal_period(
    values: Points, candidates: Sequence[int], min_correlation: float = 0.5
) -> int | None:
    """The candidate period with the highest autocorrelation above ``min_correlation``.

    Needs at least three periods of data; None where the series has no such period.
    """
    series = np.asarray(values, dtype=float)
    best, best_r = None, min_correlation
    for period in candidates:
        if period < 2 or series.size < 3 * period:
            continue
        a, b = series[:-period], series[period:]
        if float(np.std(a)) == 0.0 or float(np.std(b)) == 0.0:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best_r:
            best, best_r = period, r
    return best


def seasonal_residuals(values: Points, period: int, periods: int = 4) -> np.ndarray:
    """Each value minus the median of the same phase in up to ``periods`` earlier periods.

    The first period has no baseline: its residuals are the value minus the first period's
    median, so the output has the input's length.
    """
    series = np.asarray(values, dtype=float)
    out = np.empty_like(series)
    head = float(np.median(series[:period])) if series.size else 0.0
    for i, x in enumerate(series):
        earlier = series[i - period :: -period][:periods] if i >= period else None
        out[i] = x - (float(np.median(earlier)) if earlier is not None else head)
    return out


@dataclass(frozen=True)
class EnsembleConfig:
    """The detectors' knobs, as the cloud's alert settings and the benchmark set them."""

    window: int = 60  # points of history
    z: float = 5.0
    ewma_width: float = 4.0
    cusum_limit: float = 8.0
    cusum_points: int = 10  # the recent points a CUSUM sums over
    period: int | None = None  # seasonal period, in points (None: not seasonal)


def ensemble(values: Points, config: EnsembleConfig = EnsembleConfig()) -> Finding | None:
    """The first detector that finds the newest point abnormal, strongest first.

    Seasonal series are deseasonalised first, so the other detectors see residuals.
    """
    series = np.asarray(values, dtype=float)
    if config.period:
        series = seasonal_residuals(series, config.period)
    if series.size < 10:
        return None
    newest = float(series[-1])
    history = series[-config.window - 1 : -1]
    found = robust_z(history, newest, config.z)
    if found is None:
        found = ewma(history, newest, width=config.ewma_width)
    if found is None:
        split = max(0, series.size - config.cusum_points)
        base = series[max(0, split - config.window) : split]
        found = cusum(base, series[split:], limit=config.cusum_limit)
    if found is not None and config.period:
        found = Finding("seasonal", float(values[-1]), found.baseline, found.score, found.threshold)
    return found


def windowed_gaussian(history: Points, value: float, threshold: float = 4.0) -> Finding | None:
    """The baseline the benchmark compares with (NAB's windowed Gaussian): mean and std."""
    past = np.asarray(history, dtype=float)
    if past.size < 5:
        return None
    mean, std = float(np.mean(past)), float(np.std(past))
    z = (value - mean) / max(std, _MIN_SPREAD)
    if abs(z) <= threshold:
        return None
    return Finding("windowed_gaussian", value, mean, float(z), threshold)
