"""When requests arrive: a workload's arrival process at one site, drawn in bulk.

A time-varying Poisson process (hourly daily pattern, periodic bursts) drawn by thinning a
homogeneous one at the peak rate, vectorised: a day of a busy site is a few numpy calls.
``constant`` spaces requests evenly at the (varying) rate instead, for tests and for sensors
that report on a clock.
"""

from __future__ import annotations

import numpy as np

from hybridai.planner.distributions import FloatArray
from hybridai.planner.scenario import Arrival


def rate_at(arrival: Arrival, t: FloatArray) -> FloatArray:
    """The arrival rate (per second) at times ``t``."""
    rate = np.full(t.shape, arrival.rate_per_s)
    if arrival.daily:
        hours = (t // 3600.0).astype(np.int64) % 24
        rate = rate * np.asarray(arrival.daily, dtype=np.float64)[hours]
    if arrival.bursts is not None:
        b = arrival.bursts
        rate = np.where(np.mod(t, b.every_s) < b.duration_s, rate * b.factor, rate)
    return rate


def peak_rate(arrival: Arrival) -> float:
    peak = arrival.rate_per_s * (max(arrival.daily) if arrival.daily else 1.0)
    if arrival.bursts is not None:
        peak *= max(arrival.bursts.factor, 1.0)
    return peak


def arrival_times(arrival: Arrival, duration_s: float, rng: np.random.Generator) -> FloatArray:
    """Sorted arrival times within ``[0, duration_s)``."""
    peak = peak_rate(arrival)
    if peak <= 0.0:
        return np.empty(0)
    if arrival.process == "constant":
        grid = np.arange(0.0, duration_s, 1.0 / peak) + rng.uniform(0.0, 1.0 / peak)
        grid = grid[grid < duration_s]
        keep = np.mod(np.arange(grid.size) * 0.6180339887, 1.0) < rate_at(arrival, grid) / peak
        kept: FloatArray = grid[keep]
        return kept
    n = rng.poisson(peak * duration_s)
    times = np.sort(rng.uniform(0.0, duration_s, n))
    accepted = rng.uniform(0.0, 1.0, n) < rate_at(arrival, times) / peak
    out: FloatArray = times[accepted]
    return out
