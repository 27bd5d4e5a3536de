"""Prometheus view of the edge store, per stream: read from the store at scrape time.

Counters and gauges come straight from ``EdgeStore.stats`` (durable counters), so they survive
restarts and never disagree with the status report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hybridai.protocol.fleet import StoreStats

_COUNTERS = (
    ("records_ingested", "Records accepted into the store."),
    ("records_deduplicated", "Records refused as duplicates of stored content."),
    ("records_compressed", "Records compressed away (deadband / swinging door)."),
    ("records_synced", "Records acknowledged by the cloud."),
    ("bytes_synced", "Wire bytes of acknowledged batches."),
    ("records_expired", "Records deleted by retention."),
)


class StoreCollector(Collector):
    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: registration must not read the store before the agent is wired."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        streams = stats.streams
        for name, help_text in _COUNTERS:
            family = CounterMetricFamily(
                f"hybridai_edge_store_{name}", help_text, labels=["stream"]
            )
            for stream, s in streams.items():
                family.add_metric([stream], float(getattr(s, name)))
            yield family
        evicted = CounterMetricFamily(
            "hybridai_edge_store_records_evicted",
            "Records evicted by the disk quota, by whether they had been synced.",
            labels=["stream", "synced"],
        )
        for stream, s in streams.items():
            evicted.add_metric([stream, "true"], float(s.records_evicted_synced))
            evicted.add_metric([stream, "false"], float(s.records_evicted_unsynced))
        yield evicted
        for name, help_text in (
            ("bytes_stored", "Stored size of the stream's records."),
            ("backlog_records", "Records not yet acknowledged by the cloud."),
            ("oldest_unsynced_age_seconds", "Age of the oldest unsynced record."),
        ):
            gauge = GaugeMetricFamily(f"hybridai_edge_store_{name}", help_text, labels=["stream"])
            for stream, s in streams.items():
                value = s.oldest_unsynced_age_s if name.startswith("oldest") else getattr(s, name)
                gauge.add_metric([stream], float(value or 0.0))
            yield gauge
        yield GaugeMetricFamily(
            "hybridai_edge_sync_bytes_per_second",
            "Sync throughput over the last drain that sent something.",
            value=stats.sync_bytes_per_s,
        )
        per_stream = GaugeMetricFamily(
            "hybridai_edge_sync_stream_bytes_per_second",
            "Sync throughput of one stream's batches over the last drain that sent them.",
            labels=["stream"],
        )
        for stream, s in streams.items():
            per_stream.add_metric([stream], s.sync_bytes_per_s)
        yield per_stream
        yield GaugeMetricFamily(
            "hybridai_edge_store_quota_bytes",
            "The store's disk quota (0: none).",
            value=float(stats.quota_bytes or 0),
        )
