"""Deadband and swinging-door compression: every point dropped is within its tolerance."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridai.edge.store.compression import (
    CompressionSpec,
    Point,
    SeriesState,
    deadband,
    parse_compression,
    swinging_door,
    to_point,
)
from hybridai.edge.store.config import build_config
from hybridai.edge.store.edge_store import EdgeStore

T0 = 1_700_000_000.0
SLACK = 1e-9


def run(spec: CompressionSpec, series: list[tuple[float, float]]) -> list[int]:
    """Feed points through the pure functions; return the indexes kept."""
    kept: list[int] = []
    state: SeriesState | None = None
    for i, (ts, v) in enumerate(series):
        p = Point(i, ts, {"v": v}, "{}")
        kept.append(i)
        if spec.method == "deadband":
            drop, state = deadband(spec, state, p)
            if drop:
                kept.remove(i)
        else:
            drop_held, if_dropped, if_kept = swinging_door(spec, state, p)
            if drop_held:
                assert state is not None and state.h is not None
                kept.remove(state.h.id)
            state = if_dropped if drop_held else if_kept
    return kept


walks = st.lists(
    st.tuples(st.floats(0.01, 5.0), st.floats(-3.0, 3.0)), min_size=2, max_size=80
).map(lambda steps: _walk(steps))


def _walk(steps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    t, v, out = 0.0, 0.0, []
    for dt, dv in steps:
        t, v = t + dt, v + dv
        out.append((t, v))
    return out


@settings(max_examples=300, deadline=None)
@given(series=walks, tol=st.floats(0.0, 4.0))
def test_swinging_door_dropped_points_interpolate_within_tolerance(
    series: list[tuple[float, float]], tol: float
) -> None:
    spec = CompressionSpec("swinging_door", {"v": tol})

    kept = run(spec, series)

    assert kept[0] == 0 and kept[-1] == len(series) - 1  # the ends are always kept
    for left, right in itertools.pairwise(kept):
        (t0, v0), (t1, v1) = series[left], series[right]
        for i in range(left + 1, right):
            t, v = series[i]
            line = v0 + (v1 - v0) * (t - t0) / (t1 - t0)
            assert abs(v - line) <= tol + SLACK * (1 + abs(v)), (i, left, right)


@settings(max_examples=300, deadline=None)
@given(series=walks, tol=st.floats(0.0, 4.0))
def test_deadband_dropped_points_hold_within_tolerance(
    series: list[tuple[float, float]], tol: float
) -> None:
    kept = run(CompressionSpec("deadband", {"v": tol}), series)

    assert kept[0] == 0
    last = 0
    for i, (_, v) in enumerate(series):
        if i in kept:
            last = i
        else:
            assert abs(v - series[last][1]) <= tol


def test_a_straight_line_keeps_only_its_ends_and_the_held_point() -> None:
    series = [(float(t), 2.0 * t) for t in range(100)]

    kept = run(CompressionSpec("swinging_door", {"v": 0.01}), series)

    assert kept == [0, 99]


def test_classic_swinging_door_counterexample_is_kept() -> None:
    # Doors alone would drop point 1 (interval [1, 1.25] stays open), yet the line 0 -> 2
    # misses it by 1.25 > 1: the exact check keeps it.
    kept = run(CompressionSpec("swinging_door", {"v": 1.0}), [(0, 0), (1, 2), (2, 1.5), (3, 1.5)])

    assert 1 in kept


def test_anything_else_changing_breaks_the_series() -> None:
    spec = CompressionSpec("deadband", {"v": 10.0}, max_gap_s=5.0)
    state = SeriesState(a=to_point(spec, 1, 0.0, {"v": 1.0, "status": "ok"}))

    assert deadband(spec, state, to_point(spec, 2, 1.0, {"v": 2.0, "status": "ok"}))[0]
    assert not deadband(spec, state, to_point(spec, 2, 1.0, {"v": 2.0, "status": "alarm"}))[0]
    assert not deadband(spec, state, to_point(spec, 2, 1.0, {"v": None, "status": "ok"}))[0]
    assert not deadband(spec, state, to_point(spec, 2, 6.0, {"v": 1.0, "status": "ok"}))[0]
    assert not deadband(spec, state, to_point(spec, 2, 0.0, {"v": 1.0, "status": "ok"}))[0]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"method": "zip", "fields": {"v": 1}}, "deadband or swinging_door"),
        ({"fields": {}}, "map each numeric field"),
        ({"fields": {"v": -1}}, "tolerance >= 0"),
        ({"fields": {"v": math.nan}}, "tolerance >= 0"),
        ({"fields": {"v": 1}, "key": 3}, "list of field names"),
        ({"fields": {"v": 1}, "max_gap_s": 0}, "seconds > 0"),
        ("deadband", "must be an object"),
    ],
)
def test_bad_specs_are_refused(raw: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_compression("telemetry", raw)


def telemetry(machine: str, n: int, slope: float) -> list[dict[str, Any]]:
    return [{"ts": T0 + i, "machine": machine, "temp": 20 + slope * i} for i in range(n)]


def test_store_compresses_per_series_durably_and_counts(tmp_path: Path) -> None:
    config = build_config(
        {
            "stream_compression": {
                "telemetry": {"method": "swinging_door", "fields": {"temp": 0.1}, "key": "machine"}
            }
        }
    )
    path = tmp_path / "edge.db"
    with EdgeStore(path, config=config) as store:
        first = store.append("telemetry", telemetry("m1", 50, 0.5) + telemetry("m2", 30, -1.0))
    with EdgeStore(path, config=config) as store:  # the held points survive a restart
        again = store.append("telemetry", telemetry("m1", 60, 0.5)[50:])
        duplicate = store.append("telemetry", telemetry("m1", 10, 0.5))  # resent, compressed
        batch = store.next_batch(max_records=1000)
        stats = store.stats()

    assert first.accepted == 80 and first.compressed == 48 + 28
    assert again.compressed == 10
    assert (duplicate.accepted, duplicate.duplicates) == (0, 10)  # tombstones still dedup
    assert batch is not None
    kept = sorted((r.payload["machine"], r.ts - T0) for r in batch.records)
    assert kept == [("m1", 0.0), ("m1", 59.0), ("m2", 0.0), ("m2", 29.0)]
    assert stats.records_compressed == stats.streams["telemetry"].records_compressed == 86
    assert stats.backlog_records == 4


def test_a_held_point_already_batched_is_kept(tmp_path: Path) -> None:
    config = build_config(
        {"stream_compression": {"telemetry": {"method": "swinging_door", "fields": {"temp": 1}}}}
    )
    with EdgeStore(tmp_path / "edge.db", config=config) as store:
        store.append("telemetry", [{"ts": T0, "temp": 0.0}, {"ts": T0 + 1, "temp": 1.0}])
        first = store.next_batch()
        assert first is not None and len(first.records) == 2
        store.mark_synced(first.seq, 1)
        result = store.append("telemetry", [{"ts": T0 + 2, "temp": 2.0}])

    assert result.compressed == 0  # the held point had left in a batch: kept, not lost
