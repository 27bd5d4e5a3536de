"""Prometheus view of MQTT ingest: read from its counters at scrape time.

The same numbers as ``StatusReport.mqtt`` (one snapshot per scrape), so the two never
disagree. Counters restart from zero with the agent, which Prometheus' ``rate`` handles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hybridai.protocol.fleet import MqttStats

_COUNTERS = (
    ("messages_received", "MQTT messages received from the broker."),
    ("records_stored", "Records from MQTT messages stored durably (then acknowledged)."),
    ("records_duplicate", "Records from MQTT messages already in the store (redeliveries)."),
    ("store_failures", "Store errors while handling a message (retried, not acknowledged)."),
    ("reconnects", "Connections to the broker made after the first."),
    ("disconnects", "Connections to the broker lost."),
)


class MqttCollector(Collector):
    def __init__(self, stats: Callable[[], MqttStats]) -> None:
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, help_text in _COUNTERS:
            yield CounterMetricFamily(
                f"hybridai_edge_mqtt_{name}", help_text, value=float(getattr(stats, name))
            )
        parked = CounterMetricFamily(
            "hybridai_edge_mqtt_messages_dead_lettered",
            "MQTT messages parked in the dead_letters stream, by reason.",
            labels=["reason"],
        )
        for reason, count in stats.dead_lettered_by_reason.items():
            parked.add_metric([reason], float(count))
        yield parked
        yield GaugeMetricFamily(
            "hybridai_edge_mqtt_connected",
            "1 while connected to the broker, else 0.",
            value=1.0 if stats.connected else 0.0,
        )
