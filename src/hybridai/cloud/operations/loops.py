"""The cloud's operations loops (under the app's supervisor) and the per-report alert checks."""

from __future__ import annotations

import asyncio
import time

from hybridai.cloud.context import Cloud
from hybridai.cloud.devices import device_settings
from hybridai.cloud.operations import alerts, healing, telemetry
from hybridai.cloud.operations.notify import Notifier
from hybridai.cloud.settings import CloudSettings
from hybridai.observability.alerting import Event, rules
from hybridai.protocol.alerts import Alert


def checks(settings: CloudSettings) -> alerts.Checks:
    return alerts.Checks(
        rules=rules(
            settings.alert_clock_skew_s,
            settings.alert_disk_ratio,
            settings.alert_drift_psi,
            settings.alert_sync_stalled_s,
        ),
        heartbeat_s=settings.heartbeat_interval_s,
        silent_after=settings.alert_silent_after,
        certificate_share=settings.alert_certificate_share,
    )


def retention(settings: CloudSettings) -> telemetry.Retention:
    return telemetry.Retention(
        raw_s=settings.telemetry_raw_retention_s,
        minute_s=settings.telemetry_minute_retention_s,
        hour_s=settings.telemetry_hour_retention_s,
    )


def _heal(cloud: Cloud, events: list[tuple[Alert, Event]], now: float) -> None:
    """Self-healing acts on what the detectors found, in its own session and transaction.

    Called after every evaluation, events or not: it also lifts actions whose hold is over.
    """
    with cloud.session() as session:
        healing.handle(
            session, cloud.healing_rules, events, device_settings.defaults(cloud.settings), now
        )


def _evaluate(cloud: Cloud, notifier: Notifier) -> None:
    now = time.time()
    with cloud.session() as session:
        events = alerts.evaluate(session, checks(cloud.settings), now)
    notifier.submit(events)
    _heal(cloud, events, now)


async def alert_step(cloud: Cloud, notifier: Notifier) -> float:
    """Run every detector over recent telemetry (a supervised loop's step)."""
    await asyncio.to_thread(_evaluate, cloud, notifier)
    return cloud.settings.alert_eval_s


def _compact(cloud: Cloud) -> None:
    with cloud.session() as session:
        telemetry.compact(session, time.time(), retention(cloud.settings))


async def compact_step(cloud: Cloud) -> float:
    """Fold telemetry into 1-minute and 1-hour buckets, drop what is past retention."""
    await asyncio.to_thread(_compact, cloud)
    return cloud.settings.telemetry_compact_s


def on_report(cloud: Cloud, notifier: Notifier, device_id: str, now: float) -> None:
    """The cheap checks (fixed limits) of one device, right after its report is stored."""
    with cloud.session() as session:
        found = alerts.evaluate(session, checks(cloud.settings), now, device_id, per_report=True)
    notifier.submit(found)
    if found:  # held actions are lifted by the evaluator's loop, not on every report
        _heal(cloud, found, now)
