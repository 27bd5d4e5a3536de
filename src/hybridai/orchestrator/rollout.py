"""Rollout state machine: canary first, then waves, gated on the devices' own reports.

Pure: a plan and the last state go in with the devices' latest reports and the time; the new
state comes out. The cloud driver (``cloud/rollout.py``) persists it and turns
``assigned(state)`` into desired state; a simulator can drive the same functions.

The guarantees: a device counts as updated only once it reports the new version as serving;
a device that refuses or fails to load it, misses a health gate, or stays silent longer than
the per-device timeout is unhealthy; when more than ``abort_unhealthy_share`` of the updated
devices are unhealthy the rollout aborts and ``assigned`` becomes empty, which rolls every
device back. A wave grows only after every device of the current one has converged and the
soak time has passed since. Safety never pauses: a paused rollout still aborts.

Silence is not health: an updated device has converged only once it has served
``gates.min_requests`` requests of the new version (unless the plan allows idle devices). A
step that waits longer than ``traffic_timeout_s`` for that traffic is held (paused, with the
reason), never promoted: an operator sends traffic and resumes, or aborts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from hybridai.protocol.rollout import DeviceHealth, RolloutStatus

Status = RolloutStatus  # the wire's words are the state machine's
Health = DeviceHealth
ACTIVE: frozenset[str] = frozenset({"pending", "running", "paused"})
HELD = "held:"  # how the reason of a rollout paused for want of traffic starts
_EPS = 1e-9


class RolloutConflict(ValueError):
    """The operation does not apply to the rollout's current status."""


@dataclass(frozen=True)
class HealthGates:
    """Limits an updated device must stay within; rates are judged on enough traffic only.

    ``min_requests`` is that traffic: a device that has served fewer requests of the new version
    is still waiting, unless ``allow_idle`` accepts an idle device as healthy.
    """

    max_error_rate: float = 0.05
    max_p99_ms: float | None = None
    max_escalation_rate: float | None = None
    max_confidence_shift: float | None = None  # |mean confidence new - old| on the device
    min_requests: int = 20
    allow_idle: bool = False


@dataclass(frozen=True)
class RolloutPlan:
    model: str
    from_version: str
    to_version: str
    devices: tuple[str, ...]  # the target, in rollout order
    canary_share: float = 0.34
    step_share: float = 0.33
    soak_s: float = 10.0
    abort_unhealthy_share: float = 0.05
    device_timeout_s: float = 60.0
    gates: HealthGates = field(default_factory=HealthGates)
    traffic_timeout_s: float = 600.0  # the soak's limit: how long a step waits for traffic

    def problems(self) -> list[str]:
        """What makes this plan unusable, in words for the operator (empty: fine)."""
        found = []
        if not self.devices:
            found.append("the target selects no devices")
        if len(set(self.devices)) != len(self.devices):
            found.append("the target lists a device twice")
        if self.from_version == self.to_version:
            found.append(f"v{self.to_version} is already the version the fleet runs")
        if not 0 < self.canary_share <= 1:
            found.append("the canary share must be in (0, 1]")
        if not 0 < self.step_share <= 1:
            found.append("the step share must be in (0, 1]")
        if self.soak_s < 0 or self.device_timeout_s <= 0 or self.traffic_timeout_s <= 0:
            found.append("the soak time must be >= 0, the device and traffic timeouts > 0")
        if self.gates.min_requests < 1:
            found.append("the minimum of requests per device must be at least 1")
        if not 0 <= self.abort_unhealthy_share < 1:
            found.append("the abort threshold must be in [0, 1)")
        return found


@dataclass(frozen=True)
class DeviceReport:
    """What the cloud last heard from one device about the rolled-out model."""

    device_id: str
    reported_at: float | None = None  # None: never reported
    version: str | None = None  # the version it serves (ready)
    failed_version: str | None = None  # a version it refused or failed to load
    error: str | None = None
    requests: int = 0  # traffic counters of the new version on this device
    errors: int = 0
    escalations: int = 0
    p99_ms: float | None = None
    confidence_mean: float | None = None
    baseline_confidence: float | None = None  # the old version's, on the same device


@dataclass(frozen=True)
class Verdict:
    device_id: str
    health: Health
    reason: str
    idle: bool = False  # serving the new version, waiting only for enough traffic


@dataclass(frozen=True)
class Step:
    number: int  # 1 is the canary
    devices: tuple[str, ...]  # the devices this step added
    started_at: float
    converged_at: float | None = None  # when every updated device was first settled


@dataclass(frozen=True)
class RolloutState:
    status: Status = "pending"
    steps: tuple[Step, ...] = ()
    reason: str = ""
    updated_at: float = 0.0
    verdicts: tuple[Verdict, ...] = ()

    @property
    def updated(self) -> tuple[str, ...]:
        return tuple(d for step in self.steps for d in step.devices)

    @property
    def step(self) -> int:
        return len(self.steps)


def wave_sizes(total: int, canary_share: float, step_share: float) -> list[int]:
    """Cumulative device counts per step, ending at the whole target.

    Each step adds at most its share of the target, but at least one device: a 0.34 canary
    of 3 devices is one device.
    """
    if total <= 0:
        return []
    sizes = [min(total, max(1, math.floor(canary_share * total + _EPS)))]
    grow = max(1, math.floor(step_share * total + _EPS))
    while sizes[-1] < total:
        sizes.append(min(total, sizes[-1] + grow))
    return sizes


def assigned(state: RolloutState) -> frozenset[str]:
    """The devices that should run the new version now (none once aborted: the rollback)."""
    if state.status in ("running", "paused", "succeeded"):
        return frozenset(state.updated)
    return frozenset()


def judge(plan: RolloutPlan, report: DeviceReport | None, since: float, now: float) -> Verdict:
    """One updated device's health; evidence older than ``since`` (its step's start) is stale."""
    device = report.device_id if report else "?"
    fresh = report is not None and report.reported_at is not None and report.reported_at >= since
    target = plan.to_version
    if report is not None and fresh and report.failed_version == target:
        return Verdict(device, "unhealthy", f"could not load v{target}: {report.error or '?'}")
    if report is not None and fresh and report.version == target:
        problem = _gate(plan.gates, report)
        if problem:
            return Verdict(device, "unhealthy", problem)
        wanted = plan.gates.min_requests
        if report.requests < wanted and not plan.gates.allow_idle:
            why = f"waiting for traffic: {report.requests}/{wanted} requests"
            return Verdict(device, "waiting", why, idle=True)
        return Verdict(device, "healthy", "serving")
    if now - since > plan.device_timeout_s:
        return Verdict(
            device, "unhealthy", f"did not report v{target} within {plan.device_timeout_s:g}s"
        )
    return Verdict(device, "waiting", f"loading v{target}")


def _gate(gates: HealthGates, r: DeviceReport) -> str | None:
    if r.requests >= gates.min_requests and r.requests > 0:
        if r.errors / r.requests > gates.max_error_rate:
            return f"error rate {r.errors / r.requests:.1%} > {gates.max_error_rate:.1%}"
        rate = r.escalations / r.requests
        if gates.max_escalation_rate is not None and rate > gates.max_escalation_rate:
            return f"escalation rate {rate:.1%} > {gates.max_escalation_rate:.1%}"
        if gates.max_p99_ms is not None and r.p99_ms is not None and r.p99_ms > gates.max_p99_ms:
            return f"p99 {r.p99_ms:.1f} ms > {gates.max_p99_ms:g} ms"
        shift = (
            None
            if r.confidence_mean is None or r.baseline_confidence is None
            else abs(r.confidence_mean - r.baseline_confidence)
        )
        limit = gates.max_confidence_shift
        if limit is not None and shift is not None and shift > limit:
            return f"confidence shifted by {shift:.3f} > {limit:g}"
    return None


def _next_step(plan: RolloutPlan, state: RolloutState, now: float) -> Step:
    sizes = wave_sizes(len(plan.devices), plan.canary_share, plan.step_share)
    done = len(state.updated)
    added = plan.devices[done : sizes[state.step]]
    return Step(number=state.step + 1, devices=added, started_at=now)


def advance(
    plan: RolloutPlan, state: RolloutState, reports: Mapping[str, DeviceReport], now: float
) -> RolloutState:
    """One tick: start, judge the updated devices, abort, wait, or grow by one step."""
    if state.status == "pending":
        if plan.problems():
            return replace(state, status="aborted", reason="; ".join(plan.problems()))
        state = replace(state, status="running", updated_at=now)
        return replace(state, steps=(_next_step(plan, state, now),), reason="canary started")
    if state.status not in ("running", "paused"):
        return state
    verdicts = tuple(
        replace(judge(plan, reports.get(d), step.started_at, now), device_id=d)
        for step in state.steps
        for d in step.devices
    )
    state = replace(state, verdicts=verdicts)
    unhealthy = [v for v in verdicts if v.health == "unhealthy"]
    if len(unhealthy) > plan.abort_unhealthy_share * len(verdicts) + _EPS:
        listed = "; ".join(f"{v.device_id}: {v.reason}" for v in unhealthy)
        reason = (
            f"{len(unhealthy)} of {len(verdicts)} updated devices unhealthy "
            f"(> {plan.abort_unhealthy_share:.0%}): {listed}"
        )
        return replace(state, status="aborted", reason=reason, updated_at=now)
    if state.status == "paused":
        return state
    if any(v.health == "waiting" for v in verdicts):
        return _wait(plan, state, [v for v in verdicts if v.idle], now)
    current = state.steps[-1]
    if current.converged_at is None:
        state = replace(
            state, steps=(*state.steps[:-1], replace(current, converged_at=now)), updated_at=now
        )
    converged_at = now if current.converged_at is None else current.converged_at
    if now - converged_at < plan.soak_s:
        return state
    if len(state.updated) >= len(plan.devices):
        return replace(state, status="succeeded", reason="every device updated", updated_at=now)
    step = _next_step(plan, state, now)
    reason = f"step {step.number}: {len(state.updated) + len(step.devices)} devices"
    return replace(state, steps=(*state.steps, step), reason=reason, updated_at=now)


def _wait(plan: RolloutPlan, state: RolloutState, idle: list[Verdict], now: float) -> RolloutState:
    """Still waiting; a step without enough traffic past the soak's limit is held, not grown."""
    if not idle:
        return state
    listed = "; ".join(f"{v.device_id} {v.reason.split(': ', 1)[-1]}" for v in idle)
    if now - state.steps[-1].started_at <= plan.traffic_timeout_s:
        return replace(state, reason=f"waiting for traffic: {listed}")
    reason = (
        f"{HELD} too little traffic within {plan.traffic_timeout_s:g}s ({listed}); send traffic "
        "and resume, abort, or start the rollout again allowing idle devices"
    )
    return replace(state, status="paused", reason=reason, updated_at=now)


def pause(state: RolloutState, now: float) -> RolloutState:
    if state.status not in ("pending", "running"):
        raise RolloutConflict(f"a {state.status} rollout cannot be paused")
    return replace(state, status="paused", reason="paused by an operator", updated_at=now)


def resume(state: RolloutState, now: float) -> RolloutState:
    """Continue a paused rollout; the current step's clock restarts (timeouts, soak)."""
    if state.status != "paused":
        raise RolloutConflict(f"a {state.status} rollout cannot be resumed")
    if not state.steps:
        return replace(state, status="pending", reason="resumed", updated_at=now)
    last = replace(state.steps[-1], started_at=now, converged_at=None)
    return replace(
        state,
        status="running",
        steps=(*state.steps[:-1], last),
        reason="resumed by an operator",
        updated_at=now,
    )


def abort(state: RolloutState, reason: str, now: float) -> RolloutState:
    if state.status not in ACTIVE:
        raise RolloutConflict(f"a {state.status} rollout cannot be aborted")
    return replace(state, status="aborted", reason=reason, updated_at=now)
