"""Alerts in the metadata store: evaluated over recent telemetry, merged, resolved, acked.

``evaluate`` reads the raw points of the last few minutes, runs every rule over every series
(``observability.alerting``), adds the checks that need the registry (a device gone silent, a
certificate near its end) and writes what changed; it returns the events for notification.
One row per alert; the newest row of a kind and subject is the one a new finding merges into
or reopens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.operations import telemetry
from hybridai.observability.alerting import Event, Policy, Rule, confirmed, recovered, step, summary
from hybridai.observability.detectors import Finding, threshold
from hybridai.observability.seasons import DAY_H, HOUR_S, usual_at, usual_highs
from hybridai.protocol.alerts import Alert, AlertKind, AlertState, AlertSubject, Severity
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.storage.tables import AlertRow, DeviceCertificateRow, DeviceRow

MAX_ALERTS = 1000  # per answer
PROFILE_DAYS = 7  # of 1-hour buckets behind a series' daily profile


@dataclass(frozen=True)
class Checks:
    """What the evaluator needs from the cloud's settings."""

    rules: list[Rule]
    heartbeat_s: float
    silent_after: float
    certificate_share: float
    policy: Policy = field(default_factory=Policy)

    @property
    def lookback_s(self) -> float:
        points = self.policy.detectors.window + self.policy.m + self.policy.resolve + 5
        return points * self.heartbeat_s * 1.5


def subject_key(subject: AlertSubject) -> str:
    return f"{subject.device_id or ''}|{subject.site or ''}|{subject.model or ''}"


def _latest(session: Session, kind: str, key: str) -> AlertRow | None:
    return session.scalars(
        select(AlertRow)
        .where(AlertRow.kind == kind, AlertRow.subject_key == key)
        .order_by(AlertRow.updated_at.desc())
        .limit(1)
    ).first()


def apply(
    session: Session,
    kind: AlertKind,
    subject: AlertSubject,
    severity: Severity,
    text: str,
    found: Finding | None,
    back: bool,
    now: float,
    policy: Policy,
) -> tuple[Alert, Event] | None:
    """One evaluation of one signal, written (the caller commits); the event, if any."""
    key = subject_key(subject)
    row = _latest(session, kind, key)
    current = Alert.model_validate(row.alert) if row is not None else None
    alert, event = step(
        current, kind, subject, severity, text, found, back, now, uuid.uuid4().hex, policy
    )
    if alert is None or event is None:
        return None
    if row is None or row.alert_id != alert.alert_id:
        row = AlertRow(alert_id=alert.alert_id, kind=kind, subject_key=key, started_at=now)
        session.add(row)
    row.state = alert.state
    row.alert = alert.model_dump(mode="json")
    row.updated_at = now
    return alert, event


def _active(session: Session, device_id: str | None) -> dict[tuple[str, str], Alert]:
    query = select(AlertRow).where(AlertRow.state.in_(("firing", "suppressed")))
    if device_id is not None:  # its subject key starts with the device (subject_key)
        query = query.where(AlertRow.subject_key.startswith(f"{device_id}|", autoescape=True))
    alerts = [Alert.model_validate(r.alert) for r in session.scalars(query)]
    return {
        (a.kind, subject_key(a.subject)): a
        for a in alerts
        if device_id is None or a.subject.device_id == device_id
    }


def _daily(
    session: Session,
    series: tuple[str, str, str],
    now: float,
    profiles: dict[tuple[str, str, str], np.ndarray | None],
) -> np.ndarray | None:
    if series not in profiles:
        since = now - PROFILE_DAYS * DAY_H * HOUR_S
        profiles[series] = usual_highs(telemetry.hourly(session, *series, since))
    return profiles[series]


def evaluate(
    session: Session,
    checks: Checks,
    now: float,
    device_id: str | None = None,
    per_report: bool = False,
) -> list[tuple[Alert, Event]]:
    """Run the rules (``per_report``: only the cheap ones, for one device) and commit."""
    events: list[tuple[Alert, Event]] = []
    profiles: dict[tuple[str, str, str], np.ndarray | None] = {}
    active = _active(session, device_id)
    series = telemetry.recent_raw(session, now - checks.lookback_s, device_id)
    devices = select(DeviceRow.device_id, DeviceRow.site)
    if device_id is not None:  # one device's report: not a read of the whole fleet
        devices = devices.where(DeviceRow.device_id == device_id)
    sites: dict[str, str] = {d: s for d, s in session.execute(devices)}
    for (dev, metric, model), points in series.items():
        values = [v for _, v in points]
        for rule in checks.rules:
            if rule.metric != metric or (per_report and not rule.per_report):
                continue
            subject = AlertSubject(device_id=dev, site=sites.get(dev), model=model or None)
            current = active.get((rule.kind, subject_key(subject)))
            found = confirmed(rule, values, checks.policy)
            if found is not None and rule.limit is None:
                # only the time of day? (profiles are read only for series that look abnormal)
                highs = _daily(session, (dev, metric, model), now, profiles)
                usual = usual_at(points[-1][0], highs) if highs is not None else None
                if usual is not None:
                    usual_rise = values[-1] - usual < rule.min_delta
                    found = None if usual_rise else replace(found, detector="seasonal")
            if found is None and current is None:
                continue  # nothing found, nothing open: the state machine would not move
            back = current is not None and recovered(rule, current.evidence, values, checks.policy)
            text = summary(rule, subject, found) if found else ""
            done = apply(
                session, rule.kind, subject, rule.severity, text, found, back, now, checks.policy
            )
            if done is not None:
                events.append(done)
    if not per_report:
        events += _silence(session, checks, now, active)
        events += _certificates(session, checks, now)
    session.commit()
    return events


def _silence(
    session: Session, checks: Checks, now: float, active: dict[tuple[str, str], Alert]
) -> list[tuple[Alert, Event]]:
    limit = checks.silent_after * checks.heartbeat_s
    events = []
    rows = session.execute(
        select(DeviceRow.device_id, DeviceRow.site, DeviceRow.last_seen).where(
            DeviceRow.revoked.is_(False)
        )
    )
    for dev, site, last_seen in rows:
        if last_seen is None:
            continue  # enrolled, never reported: not silent, not yet talking
        subject = AlertSubject(device_id=dev, site=site)
        found = threshold(now - last_seen, limit)
        if found is None and ("device_silent", subject_key(subject)) not in active:
            continue
        text = f"device {dev} has sent no report for {now - last_seen:.0f} s (over {limit:g} s)"
        done = apply(
            session, "device_silent", subject, "critical", text, found, found is None, now,
            Policy(n=1, m=1, resolve=1, flap_window_s=checks.policy.flap_window_s),
        )  # fmt: skip
        if done is not None:
            events.append(done)
    return events


def _certificates(session: Session, checks: Checks, now: float) -> list[tuple[Alert, Event]]:
    newest: dict[str, tuple[float, float]] = {}
    query = select(
        DeviceCertificateRow.device_id,
        DeviceCertificateRow.not_before,
        DeviceCertificateRow.not_after,
    ).where(DeviceCertificateRow.revoked_at.is_(None))
    for dev, not_before, not_after in session.execute(query):
        if dev not in newest or not_after > newest[dev][1]:
            newest[dev] = (not_before, not_after)
    revoked = set(session.scalars(select(DeviceRow.device_id).where(DeviceRow.revoked)))
    events = []
    for dev, (not_before, not_after) in newest.items():
        if dev in revoked:
            continue
        left = not_after - now
        limit = checks.certificate_share * (not_after - not_before)
        found = threshold(limit - left, 0.0)  # positive once less than the share is left
        subject = AlertSubject(device_id=dev)
        text = f"device {dev}'s certificate expires in {max(0.0, left) / 3600:.1f} h"
        done = apply(
            session, "certificate_expiry", subject, "warning", text, found, found is None, now,
            Policy(n=1, m=1, resolve=1, flap_window_s=0.0),
        )  # fmt: skip
        if done is not None:
            events.append(done)
    return events


def list_alerts(session: Session, state: AlertState | None = None) -> list[Alert]:
    query = select(AlertRow).order_by(AlertRow.updated_at.desc()).limit(MAX_ALERTS)
    if state is not None:
        query = query.where(AlertRow.state == state)
    return [Alert.model_validate(r.alert) for r in session.scalars(query)]


def get_alert(session: Session, alert_id: str) -> Alert:
    row = session.get(AlertRow, alert_id)
    if row is None:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"no alert {alert_id[:40]!r}: list them with `hybridai alerts list`",
        )
    return Alert.model_validate(row.alert)


def ack(session: Session, alert_id: str, who: str, now: float) -> Alert:
    """An operator saw it: recorded on the alert, which keeps its state."""
    alert = get_alert(session, alert_id)
    if alert.acked_at is None:
        alert = alert.model_copy(update={"acked_at": now, "acked_by": who})
        row = session.get(AlertRow, alert_id)
        assert row is not None
        row.alert = alert.model_dump(mode="json")
        session.commit()
    return alert
