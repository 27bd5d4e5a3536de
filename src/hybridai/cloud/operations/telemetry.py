"""Device telemetry as time series in the metadata store: written per report, compacted later.

A status report adds its few raw points in the report's own transaction (one insert); a
supervised loop folds complete minutes of raw points into 1-minute buckets and complete hours
of those into 1-hour buckets, then deletes each resolution past its retention. How far it has
folded is a watermark per resolution, advanced with a compare-and-set, so several cloud
replicas can run the loop without counting a point twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hybridai.observability.telemetry import METRICS, Point, bucket
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.telemetry import TelemetryPoint, TelemetrySeries
from hybridai.storage.tables import TelemetryCompactionRow, TelemetryPointRow

RAW, MINUTE, HOUR = 0, 60, 3600
# What each resolution is folded from
SOURCES = {MINUTE: RAW, HOUR: MINUTE}
# A report stamped just before a minute ends may commit just after: fold only older minutes
GRACE_S = 30.0
MAX_POINTS = 5000  # per answer: ask for a coarser step beyond it


@dataclass(frozen=True)
class Retention:
    raw_s: float
    minute_s: float
    hour_s: float


def record(session: Session, device_id: str, points: list[Point], now: float) -> None:
    """Add one report's raw points (the caller commits, with the report)."""
    session.add_all(
        TelemetryPointRow(
            device_id=device_id,
            metric=p.metric,
            model=p.model,
            step=RAW,
            ts=now,
            count=1,
            total=p.value,
            low=p.value,
            high=p.value,
        )
        for p in points
    )


def _fold(session: Session, step: int, now: float) -> int:
    source = SOURCES[step]
    cutoff = (now - GRACE_S) - (now - GRACE_S) % step
    mark = session.get(TelemetryCompactionRow, step)
    if mark is None:
        first = session.scalar(
            select(TelemetryPointRow.ts)
            .where(TelemetryPointRow.step == source)
            .order_by(TelemetryPointRow.ts)
            .limit(1)
        )
        done = cutoff if first is None else first - first % step
    else:
        done = mark.done_until
    if done >= cutoff:
        return 0
    rows = session.execute(
        select(
            TelemetryPointRow.device_id,
            TelemetryPointRow.metric,
            TelemetryPointRow.model,
            TelemetryPointRow.ts,
            TelemetryPointRow.count,
            TelemetryPointRow.total,
            TelemetryPointRow.low,
            TelemetryPointRow.high,
        ).where(
            TelemetryPointRow.step == source,
            TelemetryPointRow.ts >= done,
            TelemetryPointRow.ts < cutoff,
        )
    ).all()
    by_device: dict[str, list[tuple[str, str, float, int, float, float, float]]] = {}
    for device_id, *rest in rows:
        by_device.setdefault(device_id, []).append(tuple(rest))  # type: ignore[arg-type]
    added = 0
    for device_id, points in by_device.items():
        for b in bucket(points, step):
            session.add(
                TelemetryPointRow(
                    device_id=device_id,
                    metric=b.metric,
                    model=b.model,
                    step=step,
                    ts=b.start,
                    count=b.count,
                    total=b.total,
                    low=b.low,
                    high=b.high,
                )
            )
            added += 1
    if mark is None:
        session.add(TelemetryCompactionRow(step=step, done_until=cutoff))
    else:
        moved = session.execute(
            update(TelemetryCompactionRow)
            .where(TelemetryCompactionRow.step == step, TelemetryCompactionRow.done_until == done)
            .values(done_until=cutoff)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()  # another replica folded this range first
            return 0
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another replica created the watermark first
        return 0
    return added


def compact(session: Session, now: float, retention: Retention) -> int:
    """Fold complete minutes and hours, then drop what is past retention; buckets added."""
    added = _fold(session, MINUTE, now) + _fold(session, HOUR, now)
    for step, keep_s in (
        (RAW, retention.raw_s),
        (MINUTE, retention.minute_s),
        (HOUR, retention.hour_s),
    ):
        session.execute(
            delete(TelemetryPointRow).where(
                TelemetryPointRow.step == step, TelemetryPointRow.ts < now - keep_s
            )
        )
    session.commit()
    return added


def auto_step(since: float, until: float) -> int:
    """The coarsest stored resolution that still draws the span in enough points."""
    span = until - since
    if span <= 3 * 3600:
        return RAW
    if span <= 3 * 86400:
        return MINUTE
    return HOUR


def series(
    session: Session,
    device_id: str,
    metric: str,
    model: str,
    since: float,
    until: float,
    step: int | None,
) -> TelemetrySeries:
    """The series between ``since`` and ``until`` at ``step`` seconds per point.

    ``step`` None picks one for the span; a step between the stored ones is folded from the
    next finer stored resolution.
    """
    if metric not in METRICS:
        raise ApiError(
            400,
            ErrorCode.BAD_REQUEST,
            f"unknown metric {metric[:64]!r}: use one of {', '.join(METRICS)}",
        )
    if until < since:
        raise ApiError(400, ErrorCode.BAD_REQUEST, "'until' is before 'since': swap them")
    wanted = auto_step(since, until) if step is None else step
    stored = max(s for s in (RAW, MINUTE, HOUR) if s <= wanted)
    rows = session.execute(
        select(
            TelemetryPointRow.metric,
            TelemetryPointRow.model,
            TelemetryPointRow.ts,
            TelemetryPointRow.count,
            TelemetryPointRow.total,
            TelemetryPointRow.low,
            TelemetryPointRow.high,
        )
        .where(
            TelemetryPointRow.device_id == device_id,
            TelemetryPointRow.metric == metric,
            TelemetryPointRow.model == model,
            TelemetryPointRow.step == stored,
            # a bucket that started before ``since`` still covers it
            TelemetryPointRow.ts > since - stored if stored else TelemetryPointRow.ts >= since,
            TelemetryPointRow.ts <= until,
        )
        .order_by(TelemetryPointRow.ts)
    ).all()
    if wanted != stored:
        folded = bucket([tuple(r) for r in rows], wanted)  # type: ignore[misc]
        points = [
            TelemetryPoint(ts=b.start, count=b.count, mean=b.mean, min=b.low, max=b.high)
            for b in folded
        ]
    else:
        points = [
            TelemetryPoint(ts=ts, count=count, mean=total / count, min=low, max=high)
            for _, _, ts, count, total, low, high in rows
        ]
    if len(points) > MAX_POINTS:
        raise ApiError(
            400,
            ErrorCode.QUERY_LIMIT,
            f"{len(points)} points is more than {MAX_POINTS}: ask for a shorter span or a "
            "larger step",
        )
    return TelemetrySeries(
        device_id=device_id, metric=metric, model=model, step=wanted, points=points
    )


def recent_raw(
    session: Session, since: float, device_id: str | None = None
) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """Raw points since ``since``, per (device, metric, model), oldest first: for detectors."""
    query = select(
        TelemetryPointRow.device_id,
        TelemetryPointRow.metric,
        TelemetryPointRow.model,
        TelemetryPointRow.ts,
        TelemetryPointRow.total,
    ).where(TelemetryPointRow.step == RAW, TelemetryPointRow.ts >= since)
    if device_id is not None:
        query = query.where(TelemetryPointRow.device_id == device_id)
    out: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for dev, metric, model, ts, value in session.execute(query.order_by(TelemetryPointRow.ts)):
        out.setdefault((dev, metric, model), []).append((ts, value))
    return out


def hourly(
    session: Session, device_id: str, metric: str, model: str, since: float
) -> list[tuple[float, float, float]]:
    """One series' 1-hour buckets since ``since`` as (start, mean, high), oldest first."""
    query = (
        select(
            TelemetryPointRow.ts,
            TelemetryPointRow.total,
            TelemetryPointRow.count,
            TelemetryPointRow.high,
        )
        .where(
            TelemetryPointRow.device_id == device_id,
            TelemetryPointRow.metric == metric,
            TelemetryPointRow.model == model,
            TelemetryPointRow.step == HOUR,
            TelemetryPointRow.ts >= since,
        )
        .order_by(TelemetryPointRow.ts)
    )
    rows = session.execute(query)
    return [(ts, total / count, high) for ts, total, count, high in rows if count]
