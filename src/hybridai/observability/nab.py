"""NAB-style scoring of anomaly detections (Lavin and Ahmad 2015, the Numenta benchmark).

Each labelled anomaly gets a window centred on it (10% of the series' length shared among its
anomalies). The earliest detection in a window scores ``A_TP`` times a scaled sigmoid of where
it fell (early in the window: near 1, at its end: near 0); a window without one costs
``A_FN``; a detection outside every window costs ``A_FP`` times the sigmoid of how far past
the previous window it came (right after a window: almost nothing; before any window or far
away: the full cost). Detections in the probationary head of a series (15%) are not scored.
Totals over a corpus are normalised: 0 for a detector that never detects, 100 for a perfect
one that detects at the start of every window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Window = tuple[int, int]  # first and last index, inclusive


@dataclass(frozen=True)
class Profile:
    a_tp: float = 1.0
    a_fp: float = -0.11
    a_fn: float = -1.0


STANDARD = Profile()
PROBATION = 0.15


def scaled_sigmoid(position: float) -> float:
    """NAB's ``2 * sigmoid(-5 y) - 1``: 0.987 at a window's start (y=-1), 0 at its end, -> -1."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def windows(length: int, anomalies: Sequence[int], fraction: float = 0.1) -> list[Window]:
    """One window per anomaly, centred on it, ``fraction`` of ``length`` shared among them."""
    if not anomalies:
        return []
    width = max(1, int(fraction * length / len(anomalies)))
    out: list[Window] = []
    for at in sorted(anomalies):
        start = max(0, at - width // 2)
        end = min(length - 1, start + width - 1)
        if out and start <= out[-1][1]:  # overlapping windows merge
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def score(
    detections: Sequence[int],
    anomaly_windows: Sequence[Window],
    length: int,
    profile: Profile = STANDARD,
    probation: float = PROBATION,
) -> float:
    """The raw NAB score of one series' detections (indices of points flagged)."""
    first_scored = int(probation * length)
    total = 0.0
    found: set[int] = set()
    for at in sorted(set(detections)):
        if at < first_scored:
            continue
        inside = next((i for i, (s, e) in enumerate(anomaly_windows) if s <= at <= e), None)
        if inside is not None:
            if inside in found:
                continue  # only the earliest detection in a window counts
            found.add(inside)
            start, end = anomaly_windows[inside]
            position = -(end - at + 1) / (end - start + 1)
            total += profile.a_tp * scaled_sigmoid(position)
            continue
        before = [w for w in anomaly_windows if w[1] < at]
        if before:
            start, end = before[-1]
            position = abs(end - at) / max(1, end - start)
            total += -profile.a_fp * scaled_sigmoid(position)
        else:
            total += profile.a_fp
    total += profile.a_fn * (len(anomaly_windows) - len(found))
    return total


def null_score(anomaly_windows: Sequence[Window], profile: Profile = STANDARD) -> float:
    return profile.a_fn * len(anomaly_windows)


def perfect_score(anomaly_windows: Sequence[Window], profile: Profile = STANDARD) -> float:
    """Every window found at its first point."""
    return sum(profile.a_tp * scaled_sigmoid(-1.0) for _ in anomaly_windows)


def normalised(raw: float, null: float, perfect: float) -> float:
    """``100 * (raw - null) / (perfect - null)``: 0 never detects, 100 is perfect."""
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)
