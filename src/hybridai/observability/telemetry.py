"""Telemetry series from device status reports, and their downsampling: pure functions.

A report becomes a few points (metric, model, value): gauges as reported (backlog, clock skew,
disk use, drift), rates from the counters of two consecutive reports (error and escalation
rates: a counter that went down means the agent restarted, and that pair gives no rate).
``bucket`` folds points into fixed-width buckets (count, sum, min, max), which is all the
1-minute and 1-hour series keep.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hybridai.protocol.fleet import StatusReport

# The series a report yields; ``model`` is "" for device-wide ones.
METRICS = (
    "uptime_s",
    "backlog_records",
    "oldest_unsynced_age_s",
    "disk_used_ratio",
    "clock_skew_s",
    "inflight",
    "cloud_reachable",
    "models_failed",
    "error_rate",
    "latency_p99_ms",
    "escalation_rate",
    "drift_psi",
    "cloud_latency_ms",
)
CLOUD_ESTIMATE = "cloud_ms."  # a report's estimate of a cloud call per model, small request


@dataclass(frozen=True)
class Point:
    metric: str
    model: str
    value: float


@dataclass(frozen=True)
class Bucket:
    metric: str
    model: str
    start: float
    count: int
    total: float
    low: float
    high: float

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def _rate(part_now: int, part_then: int, all_now: int, all_then: int) -> float | None:
    if part_now < part_then or all_now < all_then or all_now == all_then:
        return None  # a restart (counters reset) or no traffic in between
    return (part_now - part_then) / (all_now - all_then)


def report_points(report: StatusReport, previous: StatusReport | None) -> list[Point]:
    """The points one report adds; ``previous`` (the device's last report) gives the rates."""
    store = report.store
    out = [
        Point("uptime_s", "", report.uptime_s),
        Point("backlog_records", "", float(store.backlog_records)),
        Point("inflight", "", float(report.inflight)),
        Point("cloud_reachable", "", 1.0 if report.cloud_reachable else 0.0),
        # failed: no version serves; failed_version: the newest refused (the old one serves)
        Point(
            "models_failed",
            "",
            float(sum(m.state == "failed" or bool(m.failed_version) for m in report.models)),
        ),
    ]
    # nothing waiting reads as 0 s, so a stalled-sync alert sees the sync recover
    out.append(Point("oldest_unsynced_age_s", "", store.oldest_unsynced_age_s or 0.0))
    if store.quota_bytes:
        out.append(Point("disk_used_ratio", "", store.bytes_stored / store.quota_bytes))
    if report.clock_skew_s is not None:
        out.append(Point("clock_skew_s", "", report.clock_skew_s))
    if previous is not None:
        now, then = report.inference, previous.inference
        total_now = now.requests_edge + now.requests_cloud + now.requests_failed
        total_then = then.requests_edge + then.requests_cloud + then.requests_failed
        rate = _rate(now.requests_failed, then.requests_failed, total_now, total_then)
        if rate is not None:
            out.append(Point("error_rate", "", rate))
    before = {(m.name, m.version): m for m in previous.model_health} if previous else {}
    for health in report.model_health:
        if health.p99_ms is not None:
            out.append(Point("latency_p99_ms", health.name, health.p99_ms))
        old = before.get((health.name, health.version))
        if old is not None:
            rate = _rate(health.escalations, old.escalations, health.requests, old.requests)
            if rate is not None:
                out.append(Point("escalation_rate", health.name, rate))
            rate = _rate(health.errors, old.errors, health.requests, old.requests)
            if rate is not None:
                out.append(Point("error_rate", health.name, rate))
    for key, value in report.estimates.items():
        if key.startswith(CLOUD_ESTIMATE):  # the link and the cloud as this device sees them
            out.append(Point("cloud_latency_ms", key.removeprefix(CLOUD_ESTIMATE), value))
    for model, drift in report.drift.items():
        if drift.window:
            out.append(Point("drift_psi", model, drift.psi_max))
    return out


def bucket(
    points: Iterable[tuple[str, str, float, int, float, float, float]], step: int
) -> list[Bucket]:
    """Fold ``(metric, model, ts, count, total, low, high)`` into buckets ``step`` seconds wide.

    Already-folded inputs (1-minute buckets into hours) fold the same way: counts and sums
    add, extremes stay extremes.
    """
    folded: dict[tuple[str, str, float], list[float]] = {}
    for metric, model, ts, count, total, low, high in points:
        key = (metric, model, ts - ts % step)
        acc = folded.get(key)
        if acc is None:
            folded[key] = [count, total, low, high]
        else:
            acc[0] += count
            acc[1] += total
            acc[2] = min(acc[2], low)
            acc[3] = max(acc[3], high)
    return [
        Bucket(metric, model, start, int(acc[0]), acc[1], acc[2], acc[3])
        for (metric, model, start), acc in sorted(folded.items())
    ]
