"""The cloud's Prometheus metrics: one registry per ``Cloud``, rendered by ``GET /metrics``.

Events (requests, sync commits, enrollments, training runs) are counted per process: each
replica exposes its own counters and Prometheus sums them. State (rollouts by status,
certificate expiry, the database pool, the background loops) is read when scraped, from the
shared database or this process's pool and supervisor, so no replica keeps a global count.
Names follow Prometheus conventions: ``hybridai_cloud_`` prefix, ``_total`` counters, base
units (``_seconds``, ``_bytes``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from hybridai.observability.supervisor import Supervisor
from hybridai.orchestrator.breaker import BreakerState
from hybridai.orchestrator.rollout import Status
from hybridai.protocol.loops import LoopState
from hybridai.protocol.sync import BatchAck
from hybridai.storage.tables import DeviceCertificateRow, RolloutRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROLLOUT_STATUSES: tuple[str, ...] = get_args(Status)
LOOP_STATES: tuple[LoopState, ...] = get_args(LoopState)


class CloudMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._state: Collector | None = None
        r = self.registry
        self.http_requests = Counter(
            "hybridai_cloud_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "hybridai_cloud_http_request_duration_seconds",
            "HTTP request duration, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.sync_commits = Counter(
            "hybridai_cloud_sync_commits",
            "Sync batches taken, by outcome (committed, duplicate, quarantined).",
            ["outcome"],
            registry=r,
        )
        self.sync_rows = Counter(
            "hybridai_cloud_sync_rows", "Rows committed to the lake by sync batches.", registry=r
        )
        self.sync_bytes = Counter(
            "hybridai_cloud_sync_bytes", "Wire bytes of the sync batches committed.", registry=r
        )
        self.lake_commit = Histogram(
            "hybridai_cloud_lake_commit_duration_seconds",
            "Time to commit one sync batch to the lake.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.enrollments = Counter(
            "hybridai_cloud_enrollments",
            "Device enrollments, by outcome (enrolled, refused).",
            ["outcome"],
            registry=r,
        )
        self.training_runs = Counter(
            "hybridai_cloud_training_runs",
            "Training runs ended, by outcome (succeeded, failed).",
            ["outcome"],
            registry=r,
        )
        self.training_duration = Histogram(
            "hybridai_cloud_training_run_duration_seconds",
            "Duration of training runs.",
            buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
            registry=r,
        )

        # remote tiers (cloud.remote_tier): models another v2 server serves for the cloud
        self.remote_latency = Histogram(
            "hybridai_cloud_remote_infer_duration_seconds",
            "Time of requests forwarded to a remote tier, retries included, by model and "
            "outcome (ok, unreachable, unavailable, timeout, bad_response, server_error, "
            "refused).",
            ["model", "outcome"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.remote_errors = Counter(
            "hybridai_cloud_remote_errors",
            "Failures of remote tiers, by model and kind (the outcomes above, health, and "
            "circuit_open for requests refused while the breaker is open).",
            ["model", "kind"],
            registry=r,
        )
        self.remote_breaker = Gauge(
            "hybridai_cloud_remote_breaker_state",
            "1 for the state each remote tier's circuit breaker is in, 0 for the others.",
            ["model", "state"],
            registry=r,
        )

    def remote_breaker_state(self, model: str, state: BreakerState) -> None:
        for name in BreakerState:
            self.remote_breaker.labels(model, name.value).set(1.0 if name is state else 0.0)

    def remote_forget(self, model: str) -> None:
        """A model's remote tier is gone: its breaker series go too."""
        for name in BreakerState:
            with contextlib.suppress(KeyError):
                self.remote_breaker.remove(model, name.value)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)

    def synced(self, ack: BatchAck, wire_bytes: int, seconds: float) -> None:
        """One sync batch taken: counted by outcome; rows, bytes and latency when committed."""
        outcome = (
            "quarantined" if ack.quarantined else "duplicate" if ack.duplicate else "committed"
        )
        self.sync_commits.labels(outcome).inc()
        if outcome == "committed":
            self.sync_rows.inc(ack.records)
            self.sync_bytes.inc(wire_bytes)
            self.lake_commit.observe(seconds)

    def watch(self, sessions: sessionmaker[Session], engine: Engine, loops: Supervisor) -> None:
        """Read state at each scrape from these (an app's; a second app replaces the first)."""
        if self._state is not None:
            self.registry.unregister(self._state)
        self._state = StateCollector(sessions, engine, loops, time.time)
        self.registry.register(self._state)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges read when scraped: rollouts by status, certificate expiry, pool, loops."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        engine: Engine,
        loops: Supervisor,
        clock: Callable[[], float],
    ) -> None:
        self.sessions, self.engine, self.loops, self.clock = sessions, engine, loops, clock

    def describe(self) -> Iterator[Any]:
        return iter(())  # read at scrape time only: no database query at registration

    def collect(self) -> Iterator[Any]:
        yield from self._database()
        yield from self._pool()
        yield from self._loops()

    def _database(self) -> Iterator[Any]:
        rollouts = GaugeMetricFamily(
            "hybridai_cloud_rollouts", "Rollouts by status.", labels=["status"]
        )
        expiry = GaugeMetricFamily(
            "hybridai_cloud_device_certificate_expiry_seconds",
            "Seconds until the newest valid certificate of each device expires (< 0: expired).",
            labels=["device_id"],
        )
        now = self.clock()
        with self.sessions() as session:
            counts = dict(
                session.execute(
                    select(RolloutRow.status, func.count()).group_by(RolloutRow.status)
                ).all()
            )
            newest = session.execute(
                select(DeviceCertificateRow.device_id, func.max(DeviceCertificateRow.not_after))
                .where(DeviceCertificateRow.revoked_at.is_(None))
                .group_by(DeviceCertificateRow.device_id)
            ).all()
        for status in sorted({*ROLLOUT_STATUSES, *counts}):
            rollouts.add_metric([status], float(counts.get(status, 0)))
        for device_id, not_after in newest:
            expiry.add_metric([device_id], float(not_after) - now)
        yield rollouts
        yield expiry

    def _pool(self) -> Iterator[Any]:
        pool = self.engine.pool
        size = getattr(pool, "size", None)
        checked_out = getattr(pool, "checkedout", None)
        if callable(size) and callable(checked_out):
            yield GaugeMetricFamily(
                "hybridai_cloud_db_pool_size", "Database connections the pool keeps.", size()
            )
            yield GaugeMetricFamily(
                "hybridai_cloud_db_pool_checked_out",
                "Database connections in use now.",
                checked_out(),
            )

    def _loops(self) -> Iterator[Any]:
        restarts = CounterMetricFamily(
            "hybridai_cloud_loop_restarts",
            "Restarts of each background loop after a failure.",
            labels=["loop"],
        )
        state = GaugeMetricFamily(
            "hybridai_cloud_loop_state",
            "1 for the state each background loop is in, 0 for the others.",
            labels=["loop", "state"],
        )
        for health in self.loops.health():
            restarts.add_metric([health.name], float(health.restarts))
            for name in LOOP_STATES:
                state.add_metric([health.name, name], 1.0 if health.state == name else 0.0)
        yield restarts
        yield state
