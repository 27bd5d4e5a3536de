"""Prometheus metrics of the edge router: decisions by reason, escalations, latency.

Each router owns its registry (not the process-global one), so several agents in one process
(tests, benchmarks) never collide; ``/metrics`` renders it in the text exposition format.
Requests answered carry the model version that answered them. A window of recent latencies
per placement gives the p50/p99 of the status report's summary (``protocol.metrics``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WINDOW = 1024  # recent requests per placement kept for the summary's percentiles


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.recent_s: dict[str, deque[float]] = {}  # where -> recent request seconds
        self.answered_by: dict[str, int] = {}  # where -> requests answered there
        self.decisions = Counter(
            "hybridai_edge_decisions",
            "Placement decisions, by model, placement and reason.",
            ["model", "placement", "reason"],
            registry=self.registry,
        )
        self.served = Counter(
            "hybridai_edge_served",
            "Requests answered, by model version, where they finally ran and whether degraded.",
            ["model", "version", "where", "degraded"],
            registry=self.registry,
        )
        self.escalations = Counter(
            "hybridai_edge_escalations",
            "Cascade requests escalated to the cloud, by outcome (ok, failed).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.failures = Counter(
            "hybridai_edge_upstream_failures",
            "Calls to an upstream (cloud, peer) that failed or timed out.",
            ["upstream"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hybridai_edge_request_seconds",
            "Whole request time at the edge router, by where it finally ran.",
            ["where"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def decided(self, model: str, placement: str, reason: str) -> None:
        self._child(self.decisions, (model, placement, reason)).inc()

    def answered(
        self, model: str, version: str, where: str, degraded: bool, seconds: float
    ) -> None:
        self._child(self.served, (model, version, where, "true" if degraded else "false")).inc()
        self._child(self.latency, (where,)).observe(seconds)
        recent = self.recent_s.get(where)
        if recent is None:
            recent = self.recent_s[where] = deque(maxlen=WINDOW)
        recent.append(seconds)
        self.answered_by[where] = self.answered_by.get(where, 0) + 1

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        """The labelled child, cached: ``labels()`` costs more than the increment itself."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
