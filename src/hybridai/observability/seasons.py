"""A series' daily profile from its 1-hour buckets: what is usual at this time of day.

The detectors watch minutes of raw points, so a rise every morning (a shift starting, traffic
picking up) looks like an anomaly to them. Where a series' hourly means repeat day after day
(``seasonal_period`` finds 24 h in at least three days of them), a finding counts only if the
value is also above what is usual at that time of day: the median, over earlier days, of the
highest point within an hour of it. A rise at 03:00 to the daytime level still alerts; the
same level at 08:05, when it comes every day, does not. Hours are counted in UTC (a period does
not care where the day begins). Pure: the cloud's evaluator reads the buckets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hybridai.observability.detectors import seasonal_period

HOUR_S = 3600.0
DAY_H = 24
MIN_DAYS = 3  # fewer days of history: no profile


def usual_highs(hourly: Sequence[tuple[float, float, float]]) -> np.ndarray | None:
    """Per hour of the day, the usual high; None where the series has no daily period.

    ``hourly``: (bucket start, mean, high) of 1-hour buckets, oldest first. A gap is read as
    the series' median for the period test and left out of the highs.
    """
    if not hourly:
        return None
    first = int(hourly[0][0] // HOUR_S)
    span = int(hourly[-1][0] // HOUR_S) - first + 1
    if span < MIN_DAYS * DAY_H:
        return None
    means = np.full(span, float(np.median([m for _, m, _ in hourly])))
    highs = np.full(span, np.nan)
    for ts, mean, high in hourly:
        means[int(ts // HOUR_S) - first] = mean
        highs[int(ts // HOUR_S) - first] = high
    if seasonal_period(means, (DAY_H,)) != DAY_H:
        return None
    usual = np.full(DAY_H, np.nan)
    for hour in range(DAY_H):
        per_day = []
        for at in range((hour - first) % DAY_H, span, DAY_H):
            near = highs[max(0, at - 1) : at + 2]  # an hour either side: a shift starts early
            if not np.all(np.isnan(near)):
                per_day.append(float(np.nanmax(near)))
        if len(per_day) >= MIN_DAYS:
            usual[hour] = float(np.median(per_day))
    return None if np.all(np.isnan(usual)) else usual


def usual_at(ts: float, highs: np.ndarray) -> float | None:
    """The usual high at ``ts``'s time of day (None: too few days saw that hour)."""
    value = float(highs[int(ts // HOUR_S) % DAY_H])
    return None if np.isnan(value) else value
