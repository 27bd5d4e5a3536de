"""Deadband and swinging-door compression of slow-moving numeric signals, per stream.

A stream opts in with a spec: the method, an absolute tolerance per numeric field, the fields
that name a series (e.g. ``machine``: each machine's signal is compressed on its own) and an
optional ``max_gap_s``. The functions here are pure (state in, decision and state out); the
store applies them inside the append transaction and keeps the state in SQLite, so a restart
continues where it stopped. Guarantees, for every point compressed away:

- **deadband**: each configured field is within its tolerance of the same field in the last
  *kept* point of its series (reconstruct by holding the last kept value).
- **swinging door**: each configured field is within its tolerance of the straight line between
  the kept points just before and just after it (reconstruct by linear interpolation). The
  door is checked against the actual next kept point, not only the doors' slopes, so the
  bound holds exactly (up to floating-point rounding); classic swinging door can exceed it.

Both keep a point whenever anything else changes: a configured field missing or not a finite
number, any other non-key field differing from the series' kept point, time not moving forward,
or ``max_gap_s`` passing since the last kept point. Nothing is interpolated across such points.
Swinging door holds back the series' latest point (stored, durable) until the next one shows
whether it may go; a held point already handed to a sync batch is kept instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from hybridai.protocol.edge_settings import CompressionMethod

METHODS: tuple[CompressionMethod, ...] = ("deadband", "swinging_door")


@dataclass(frozen=True)
class CompressionSpec:
    method: CompressionMethod
    tolerances: Mapping[str, float]  # field -> absolute tolerance, >= 0
    key: tuple[str, ...] = ()  # fields naming a series
    max_gap_s: float | None = None  # keep a point at least this often (None: never forced)

    def fingerprint(self) -> str:
        return json.dumps([self.method, sorted(self.tolerances.items()), self.key, self.max_gap_s])


@dataclass(frozen=True)
class Point:
    """One record as compression sees it."""

    id: int
    ts: float
    values: Mapping[str, float] | None  # the configured fields; None when one is unusable
    rest: str  # the other non-key fields, canonical JSON


@dataclass(frozen=True)
class SeriesState:
    """A series' last kept point ``a``, its held point ``h`` and the doors ``lo``/``hi``.

    ``lo``/``hi`` bound, per field, the slopes from ``a`` that keep every point dropped since
    ``a`` within tolerance.
    """

    a: Point
    h: Point | None = None
    lo: Mapping[str, float] | None = None
    hi: Mapping[str, float] | None = None


def parse_compression(stream: str, raw: Any) -> CompressionSpec:
    """``{"method": "swinging_door", "fields": {"temp": 0.5}, "key": ["machine"]}``."""
    where = f"stream_compression[{stream!r}]"
    if isinstance(raw, CompressionSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be an object with method, fields and optional key")
    method = raw.get("method", "swinging_door")
    if method not in METHODS:
        raise ValueError(f"{where}.method = {method!r}: use deadband or swinging_door")
    fields = raw.get("fields")
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError(f"{where}.fields must map each numeric field to its tolerance")
    tolerances: dict[str, float] = {}
    for name, tol in fields.items():
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
            raise ValueError(f"{where}.fields[{name!r}] = {tol!r}: give a tolerance >= 0")
        tolerances[str(name)] = float(tol)
    key = raw.get("key", [])
    if isinstance(key, str):
        key = [key]
    if not isinstance(key, list | tuple) or not all(isinstance(k, str) for k in key):
        raise ValueError(f"{where}.key must be a list of field names")
    gap = raw.get("max_gap_s")
    if gap is not None and (isinstance(gap, bool) or not isinstance(gap, int | float) or gap <= 0):
        raise ValueError(f"{where}.max_gap_s = {gap!r}: give seconds > 0")
    return CompressionSpec(
        method=method,
        tolerances=tolerances,
        key=tuple(key),
        max_gap_s=None if gap is None else float(gap),
    )


def series_key(spec: CompressionSpec, fields: Mapping[str, Any]) -> str:
    return json.dumps([fields.get(k) for k in spec.key], sort_keys=True)


def to_point(spec: CompressionSpec, local_id: int, ts: float, fields: Mapping[str, Any]) -> Point:
    values: dict[str, float] | None = {}
    for name in spec.tolerances:
        v = fields.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            values = None
            break
        assert values is not None
        values[name] = float(v)
    rest = {k: v for k, v in fields.items() if k not in spec.tolerances and k not in spec.key}
    return Point(local_id, ts, values, json.dumps(rest, sort_keys=True))


def _breaks(spec: CompressionSpec, state: SeriesState | None, p: Point) -> bool:
    """Whether ``p`` must start afresh: nothing may be dropped across it."""
    if state is None or p.values is None or state.a.values is None or p.rest != state.a.rest:
        return True
    last = state.h or state.a
    if p.ts <= last.ts:
        return True
    return spec.max_gap_s is not None and p.ts - state.a.ts > spec.max_gap_s


def deadband(
    spec: CompressionSpec, state: SeriesState | None, p: Point
) -> tuple[bool, SeriesState]:
    """Decide on a new point: ``(drop it, new state)``."""
    if _breaks(spec, state, p):
        return False, SeriesState(a=p)
    assert state is not None and state.a.values is not None and p.values is not None
    a = state.a.values
    inside = all(abs(p.values[f] - a[f]) <= tol for f, tol in spec.tolerances.items())
    return (True, state) if inside else (False, SeriesState(a=p))


def swinging_door(
    spec: CompressionSpec, state: SeriesState | None, p: Point
) -> tuple[bool, SeriesState, SeriesState]:
    """Decide on the held point given a new one: ``(drop held, state if dropped, if kept)``.

    The held point may go when the line from the last kept point to ``p`` passes within
    tolerance of it and of every point dropped before it (its slope lies inside the doors).
    The caller uses the second state when it could drop the held point, else the third.
    """
    if _breaks(spec, state, p):
        fresh = SeriesState(a=p)
        return False, fresh, fresh
    assert state is not None
    kept = SeriesState(a=state.h, h=p) if state.h is not None else SeriesState(a=state.a, h=p)
    h = state.h
    if h is None:
        return False, kept, kept
    a, av, hv, pv = state.a, state.a.values, h.values, p.values
    assert av is not None and hv is not None and pv is not None
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for f, tol in spec.tolerances.items():
        dh = h.ts - a.ts
        lo[f] = max((hv[f] - tol - av[f]) / dh, (state.lo or {}).get(f, -math.inf))
        hi[f] = min((hv[f] + tol - av[f]) / dh, (state.hi or {}).get(f, math.inf))
        slope = (pv[f] - av[f]) / (p.ts - a.ts)
        if not lo[f] <= slope <= hi[f]:
            return False, kept, kept
    return True, replace(state, h=p, lo=lo, hi=hi), kept


def dump_state(spec: CompressionSpec, state: SeriesState) -> str:
    def point(p: Point | None) -> Any:
        return None if p is None else [p.id, p.ts, p.values, p.rest]

    return json.dumps(
        {
            "spec": spec.fingerprint(),
            "a": point(state.a),
            "h": point(state.h),
            "lo": state.lo,
            "hi": state.hi,
        }
    )


def load_state(spec: CompressionSpec, text: str | None) -> SeriesState | None:
    """The saved state, or None when there is none or the spec changed since."""
    if text is None:
        return None
    data = json.loads(text)
    if data.get("spec") != spec.fingerprint():
        return None

    def point(raw: Any) -> Point | None:
        return None if raw is None else Point(raw[0], raw[1], raw[2], raw[3])

    a = point(data["a"])
    assert a is not None
    return SeriesState(a=a, h=point(data["h"]), lo=data["lo"], hi=data["hi"])
