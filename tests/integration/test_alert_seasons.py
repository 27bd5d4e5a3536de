"""A daily pattern in a series' history keeps its daily rise from alerting, not a rise at night.

Six days of 1-hour buckets (as compaction leaves them) say that p99 latency is 40 ms at night
and 140 ms from 08:00 to 18:00 UTC; raw points then step from 40 to 140 ms, once at 08:00 and
once at 03:00. The same steps without the history alert both times: that is what the profile
changes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy.orm import Session

from hybridai.cloud.operations import alerts, telemetry
from hybridai.observability.alerting import rules
from hybridai.observability.seasons import usual_highs
from hybridai.observability.telemetry import Point
from hybridai.storage.tables import TelemetryPointRow

HEARTBEAT = 10.0
TODAY = (int(time.time()) // 86400) * 86400.0  # midnight UTC
CHECKS = alerts.Checks(
    rules=rules(30.0, 0.9, 0.25), heartbeat_s=HEARTBEAT, silent_after=4, certificate_share=0.15
)


def _daytime(hour: int) -> bool:
    return 8 <= hour < 18


def _history(db: Session, days: int = 6) -> None:
    rng = np.random.default_rng(1)
    for h in range(days * 24):
        start = TODAY - days * 86400 + h * 3600
        level = 140.0 if _daytime(h % 24) else 40.0
        points = level + rng.normal(0, 3, 360)
        db.add(
            TelemetryPointRow(
                device_id="gw-1", metric="latency_p99_ms", model="pm", step=telemetry.HOUR,
                ts=start, count=360, total=float(points.sum()), low=float(points.min()),
                high=float(points.max()),
            )
        )  # fmt: skip
    db.commit()


def _step_at(db: Session, at: float) -> list[str]:
    """Raw points 40 ms for 10 minutes before ``at``, 140 ms after; the alerts evaluated."""
    rng = np.random.default_rng(2)
    kinds: list[str] = []
    for i in range(-60, 4):
        ts = at + i * HEARTBEAT
        value = (140.0 if i >= 0 else 40.0) + float(rng.normal(0, 3))
        telemetry.record(db, "gw-1", [Point("latency_p99_ms", "pm", value)], ts)
        db.commit()
        for alert, event in alerts.evaluate(db, CHECKS, ts):
            if event == "fired":
                kinds.append(f"{alert.kind}:{alert.detector}")
    return kinds


@pytest.mark.parametrize("hour", [8, 3])
def test_without_history_every_step_alerts(db: Session, hour: int) -> None:
    assert [k.split(":")[0] for k in _step_at(db, TODAY + hour * 3600)] == ["latency"]


def test_the_daily_morning_rise_raises_nothing(db: Session) -> None:
    _history(db)
    assert _step_at(db, TODAY + 8 * 3600) == []


def test_the_same_rise_at_night_alerts_against_the_time_of_day(db: Session) -> None:
    _history(db)
    assert _step_at(db, TODAY + 3 * 3600) == ["latency:seasonal"]


def test_no_profile_without_a_daily_period_or_three_days() -> None:
    flat = [(TODAY + h * 3600, 40.0 + (h % 7), 50.0) for h in range(6 * 24)]
    assert usual_highs(flat) is None  # a weekly-ish wobble, no day
    daily = [(TODAY + h * 3600, 140.0 if _daytime(h % 24) else 40.0, 150.0) for h in range(48)]
    assert usual_highs(daily) is None  # two days are not enough
    highs = usual_highs(daily + [(TODAY + h * 3600, 40.0, 45.0) for h in range(48, 72)])
    assert highs is not None and highs.shape == (24,)
