"""Alert rules and the alert lifecycle: pure functions of series, alerts and the time.

A ``Rule`` says which series it watches, how (an anomaly of the detector ensemble, upward only,
or a fixed limit) and how bad a hit is. Hysteresis against flapping, three ways:
- a hit counts only when the detector fires at ``n`` of the newest ``m`` points (a one-report
  blip raises nothing);
- a firing alert resolves only after ``resolve`` points in a row are back to normal, measured
  against the baseline frozen when it fired (a detector that has adapted to a new level does
  not resolve it) with a band half as wide as the one that fired it;
- an alert that fires again within ``flap_window_s`` of its end reopens (occurrences + 1, no
  new alert); after ``max_flaps`` reopenings it is ``suppressed``: kept, not notified.
The cloud's store (``cloud.operations.alerts``) reads the series, calls these and writes the
result; this module has no I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from hybridai.observability.detectors import EnsembleConfig, Finding, ensemble, threshold
from hybridai.protocol.alerts import Alert, AlertKind, AlertSubject, Severity

Event = Literal["fired", "merged", "resolved", "reopened", "suppressed"]


@dataclass(frozen=True)
class Rule:
    kind: AlertKind
    metric: str
    severity: Severity
    limit: float | None = None  # a fixed limit; None: the anomaly ensemble, upward changes
    absolute: bool = False  # compare |value| with the limit (clock skew either way)
    min_delta: float = 0.0  # the smallest change from the baseline that counts (anomalies)
    per_report: bool = False  # cheap enough to check on every report
    what: str = ""  # for the summary, e.g. "p99 latency"


@dataclass(frozen=True)
class Policy:
    n: int = 2
    m: int = 3
    resolve: int = 3
    flap_window_s: float = 300.0
    max_flaps: int = 3
    detectors: EnsembleConfig = field(default_factory=lambda: EnsembleConfig(window=30))


def rules(
    clock_skew_s: float, disk_ratio: float, drift_psi: float, sync_stalled_s: float = 3600.0
) -> list[Rule]:
    """The rules over report telemetry (silence and certificates are checked by the store)."""
    return [
        Rule("latency", "latency_p99_ms", "warning", min_delta=20.0, what="p99 latency (ms)"),
        Rule("error_rate", "error_rate", "critical", min_delta=0.05, what="error rate"),
        Rule("backlog_growth", "backlog_records", "warning", min_delta=200.0, what="backlog"),
        Rule("escalation_rate", "escalation_rate", "warning", min_delta=0.1, what="escalations"),
        Rule("drift", "drift_psi", "warning", limit=drift_psi, per_report=True, what="PSI"),
        Rule("disk_quota", "disk_used_ratio", "critical", disk_ratio, per_report=True,
             what="disk quota use"),
        Rule("clock_skew", "clock_skew_s", "warning", clock_skew_s, absolute=True,
             per_report=True, what="clock skew (s)"),
        Rule("model_unhealthy", "models_failed", "critical", 0.5, per_report=True,
             what="failed models"),
        Rule("cloud_link_slow", "cloud_latency_ms", "warning", min_delta=50.0,
             what="cloud round trip (ms)"),
        Rule("sync_stopped", "oldest_unsynced_age_s", "warning", sync_stalled_s, per_report=True,
             what="oldest unsynced record age (s)"),
    ]  # fmt: skip


def _hit(rule: Rule, values: Sequence[float], policy: Policy) -> Finding | None:
    """The rule's finding at the newest of ``values``, if it has one."""
    if not values:
        return None
    if rule.limit is not None:
        value = abs(values[-1]) if rule.absolute else values[-1]
        return threshold(value, rule.limit)
    found = ensemble(values, policy.detectors)
    if found is None or found.score <= 0 or values[-1] - found.baseline < rule.min_delta:
        return None  # only a rise, and the newest point itself far enough up to matter
    return found


def confirmed(rule: Rule, values: Sequence[float], policy: Policy) -> Finding | None:
    """The newest finding, if the rule hits at ``n`` of the newest ``m`` points."""
    hits = [
        found
        for back in range(min(policy.m, len(values)))
        if (found := _hit(rule, values[: len(values) - back], policy)) is not None
    ]
    return hits[0] if len(hits) >= policy.n else None


def recovered(
    rule: Rule, evidence: dict[str, object], values: Sequence[float], policy: Policy
) -> bool:
    """``resolve`` points in a row back within half the band that fired the alert."""
    recent = list(values[-policy.resolve :])
    if len(recent) < policy.resolve:
        return False
    if rule.limit is not None:
        return all((abs(v) if rule.absolute else v) <= rule.limit for v in recent)
    baseline = float(evidence.get("baseline", 0.0))  # type: ignore[arg-type]
    band = max(rule.min_delta, abs(float(evidence.get("value", baseline)) - baseline) / 2)  # type: ignore[arg-type]
    return all(v - baseline < band for v in recent)


def summary(rule: Rule, subject: AlertSubject, found: Finding) -> str:
    where = subject.device_id or subject.site or "fleet"
    if subject.model:
        where += f" model {subject.model}"
    if found.detector == "threshold":
        return f"{rule.what or rule.metric} on {where} is beyond its limit {found.threshold:g}"
    return f"{rule.what or rule.metric} on {where} rose above its baseline ({found.detector})"


def step(
    current: Alert | None,
    kind: AlertKind,
    subject: AlertSubject,
    severity: Severity,
    summary_text: str,
    found: Finding | None,
    is_recovered: bool,
    now: float,
    new_id: str,
    policy: Policy = Policy(),
) -> tuple[Alert | None, Event | None]:
    """The alert after one evaluation of its signal, and what happened (None: nothing).

    ``current`` is the newest alert of this kind and subject (firing, suppressed or resolved);
    ``found`` a confirmed finding or None; ``is_recovered`` whether the signal is back.
    """
    active = current is not None and current.state in ("firing", "suppressed")
    if current is not None and active and is_recovered:
        # back within the band of its frozen baseline: a detector's memory does not hold it
        return current.model_copy(update={"state": "resolved", "ended_at": now}), "resolved"
    if found is not None:
        evidence = found.evidence()
        if current is not None and active:
            merged = current.model_copy(
                update={"occurrences": current.occurrences + 1, "last_seen_at": now}
            )
            return merged, "merged"
        if (
            current is not None
            and current.ended_at is not None
            and now - current.ended_at <= policy.flap_window_s
        ):
            flaps = int(current.evidence.get("flaps", 0)) + 1
            state = "suppressed" if flaps >= policy.max_flaps else "firing"
            reopened = current.model_copy(
                update={
                    "state": state,
                    "ended_at": None,
                    "last_seen_at": now,
                    "occurrences": current.occurrences + 1,
                    "evidence": {**current.evidence, "flaps": flaps, "last": evidence},
                }
            )
            return reopened, "suppressed" if state == "suppressed" else "reopened"
        fired = Alert(
            alert_id=new_id,
            kind=kind,
            severity=severity,
            state="firing",
            subject=subject,
            summary=summary_text,
            started_at=now,
            last_seen_at=now,
            detector=found.detector,
            evidence=evidence,
        )
        return fired, "fired"
    return current, None
