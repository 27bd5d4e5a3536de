"""Operations: how well the cloud's anomaly detectors find what goes wrong in telemetry.

Part ``detectors``: seeded synthetic series, seasonal (a daily-like cycle) and not, each with
one labelled anomaly of a kind (a spike, a level shift, a slow drift, a variance change) or
none at all; the detector ensemble the alerts use (``observability.detectors.ensemble``) and a
windowed-Gaussian baseline scan the same series in the same run, point by point, seeing only
the past; both are scored NAB-style (standard profile, ``observability.nab``). As NAB does,
each detector's threshold is the best of a small grid over the whole corpus; both get the same
grid size and the same refractory period after a detection.

Metrics: ``nab_score``, ``nab_score_baseline`` (0: never detects, 100: perfect).

Part ``healing`` (bench/_healing.py): per injected fault F, ``F.alert_s`` (fault -> alert) and
``F.healed_s`` (alert -> resolved, by the self-healing rules) with 10 s reports, and
``false_alerts_per_hour`` of a steady fleet, all in simulated fleet time.

Part ``dashboard`` (bench/_dashboard.py): ``dashboard_load_ms``, the fleet page with 1,000
devices in Debian's Chromium (navigation timing, median).

Each part is a function ``(quick) -> (metrics, notes)`` in ``PARTS``.

Usage: python bench/operations.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _common import show, write
from _dashboard import dashboard_part
from _healing import healing_part

from hybridai.observability import nab
from hybridai.observability.detectors import (
    EnsembleConfig,
    ensemble,
    seasonal_period,
    seasonal_residuals,
    windowed_gaussian,
)

KINDS = ("spike", "level_shift", "drift", "variance", "none")
PERIOD = 48  # points per cycle of the seasonal series
CANDIDATE_PERIODS = (12, 24, 48, 60, 96)  # what the detector tries; it is not told which
WINDOW = 60


@dataclass(frozen=True)
class Series:
    name: str
    values: np.ndarray
    anomalies: list[int]


def make_series(kind: str, seasonal: bool, length: int, seed: int) -> Series:
    """Noise around a level (plus a cycle when seasonal) with one anomaly of ``kind``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    values = 50.0 + rng.normal(0.0, 1.0, length)
    if seasonal:
        values += 6.0 * np.sin(2 * np.pi * t / PERIOD)
    at = int(rng.integers(int(0.35 * length), int(0.85 * length)))
    if kind == "spike":
        values[at] += rng.choice([-1, 1]) * rng.uniform(6.0, 10.0)
    elif kind == "level_shift":
        values[at:] += rng.choice([-1, 1]) * rng.uniform(3.0, 5.0)
    elif kind == "drift":
        values[at:] += 0.05 * np.arange(length - at)
    elif kind == "variance":
        values[at:] += rng.normal(0.0, 3.0, length - at)
    name = f"{kind}-{'seasonal' if seasonal else 'flat'}-{seed}"
    return Series(name, values, [] if kind == "none" else [at])


def corpus(quick: bool) -> list[Series]:
    length = 600 if quick else 1500
    seeds = range(2 if quick else 6)
    return [
        make_series(kind, seasonal, length, 1000 * s + i)
        for s in seeds
        for i, kind in enumerate(KINDS)
        for seasonal in (False, True)
    ]


Detect = Callable[[np.ndarray, int], bool]  # the series so far, the index: is it anomalous?


def scan(series: np.ndarray, detect: Detect, refractory: int) -> list[int]:
    """Indices flagged, each seeing only the past; quiet for ``refractory`` points after one."""
    flagged: list[int] = []
    quiet_until = -1
    for i in range(WINDOW, series.size):
        if i <= quiet_until:
            continue
        if detect(series, i):
            flagged.append(i)
            quiet_until = i + refractory
    return flagged


def ensemble_detector(z: float) -> Callable[[Series], list[int]]:
    def run(s: Series) -> list[int]:
        head = s.values[: int(nab.PROBATION * s.values.size)]
        period = seasonal_period(head, CANDIDATE_PERIODS)
        series = seasonal_residuals(s.values, period) if period else s.values
        config = EnsembleConfig(
            window=WINDOW, z=z, ewma_width=z * 0.8, cusum_limit=z * 1.6, period=None
        )
        return scan(
            series,
            lambda v, i: ensemble(v[max(0, i - WINDOW - 20) : i + 1], config) is not None,
            refractory=WINDOW,
        )

    return run


def baseline_detector(z: float) -> Callable[[Series], list[int]]:
    def run(s: Series) -> list[int]:
        return scan(
            s.values,
            lambda v, i: windowed_gaussian(v[i - WINDOW : i], float(v[i]), z) is not None,
            refractory=WINDOW,
        )

    return run


def nab_total(series: list[Series], detector: Callable[[Series], list[int]]) -> float:
    raw = null = perfect = 0.0
    for s in series:
        windows = nab.windows(s.values.size, s.anomalies)
        raw += nab.score(detector(s), windows, s.values.size)
        null += nab.null_score(windows)
        perfect += nab.perfect_score(windows)
    return nab.normalised(raw, null, perfect)


def detectors_part(quick: bool) -> tuple[dict[str, float], dict[str, Any]]:
    series = corpus(quick)
    grid = (3.0, 4.0, 5.0, 6.0)
    ours = {z: nab_total(series, ensemble_detector(z)) for z in grid}
    base = {z: nab_total(series, baseline_detector(z)) for z in grid}
    best, best_base = max(ours, key=ours.__getitem__), max(base, key=base.__getitem__)
    metrics = {"nab_score": round(ours[best], 2), "nab_score_baseline": round(base[best_base], 2)}
    notes = {
        "series": len(series),
        "points": int(sum(s.values.size for s in series)),
        "kinds": list(KINDS),
        "threshold": best,
        "threshold_baseline": best_base,
        "scores_by_threshold": {str(z): round(v, 2) for z, v in ours.items()},
        "scores_by_threshold_baseline": {str(z): round(v, 2) for z, v in base.items()},
    }
    return metrics, notes


PARTS: dict[str, Callable[[bool], tuple[dict[str, float], dict[str, Any]]]] = {
    "detectors": detectors_part,
    "healing": healing_part,
    "dashboard": dashboard_part,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller corpus, for smoke runs")
    args = parser.parse_args()
    metrics: dict[str, float] = {}
    notes: dict[str, Any] = {}
    for name, part in PARTS.items():
        started = time.perf_counter()
        part_metrics, part_notes = part(args.quick)
        metrics.update(part_metrics)
        notes[name] = {**part_notes, "seconds": round(time.perf_counter() - started, 1)}
    show("operations", metrics)
    print(write("operations", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
