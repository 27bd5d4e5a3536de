"""The metrics summary of a status report: the edge's ``/metrics`` in a few numbers.

The cloud cannot scrape an edge behind NAT; the heartbeat carries this instead
(``protocol.metrics.MetricsSummary``): totals since start, recent percentiles by placement and
per model version, backlog and disk use.
"""

from __future__ import annotations

import time

from hybridai.edge.routing.backend import EdgeBackend
from hybridai.edge.routing.model_health import percentile
from hybridai.protocol.fleet import StoreStats
from hybridai.protocol.metrics import LatencySummary, MetricsSummary


def summarize(backend: EdgeBackend, store: StoreStats) -> MetricsSummary:
    metrics, stats = backend.metrics, backend.stats
    models = backend.health.summaries()
    latency = {
        where: LatencySummary(
            requests=metrics.answered_by.get(where, 0),
            p50_ms=percentile([s * 1000.0 for s in recent], 0.5),
            p99_ms=percentile([s * 1000.0 for s in recent], 0.99),
        )
        for where, recent in sorted(metrics.recent_s.items())
    }
    return MetricsSummary(
        at=time.time(),
        requests=stats.requests_edge + stats.requests_cloud,
        errors=stats.requests_failed,
        escalations=sum(m.escalations for m in models),
        degraded=stats.degraded,
        latency=latency,
        backlog_records=store.backlog_records,
        oldest_unsynced_age_s=store.oldest_unsynced_age_s,
        disk_bytes=store.bytes_stored,
        disk_quota_bytes=store.quota_bytes,
        models=models,
    )
