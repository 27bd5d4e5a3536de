"""Data-plane rules from the edge settings, overridden by the desired state; and /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from hybridai.edge.dataplane import DataPlane
from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.store.metrics import StoreCollector


def test_desired_state_overrides_settings_and_bad_values_keep_the_last_good(
    tmp_path: Path,
) -> None:
    settings = EdgeSettings(
        data_dir=tmp_path,
        stream_priorities={"vibration": "low"},
        store_quota_bytes=10_000,
        sync_window="22:00-06:00",
    )
    desired: dict[str, Any] = {}
    with EdgeStore(tmp_path / "edge.db") as store:
        plane = DataPlane(settings, store, lambda: desired)
        assert store.config.quota_bytes == 10_000 and plane.window is not None
        assert store.config.priority("vibration") == 0 and store.config.priority("alerts") == 2

        desired.update(
            stream_priorities={"alerts": "normal"},
            store_quota_bytes=50_000,
            sync_bandwidth_bytes_per_s=1000,
        )
        assert plane.apply()
        assert store.config.quota_bytes == 50_000 and plane.bandwidth == 1000.0
        assert store.config.priority("vibration") == 0 and store.config.priority("alerts") == 1

        desired["sync_window"] = "soon"
        assert not plane.apply()
        assert plane.error is not None and "HH:MM-HH:MM" in plane.error
        assert store.config.quota_bytes == 50_000  # the last good rules stay in force


def test_store_metrics_per_stream(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "edge.db") as store:
        store.append("alerts", [{"ts": 1.0, "v": 1}, {"ts": 1.0, "v": 1}])
        registry = CollectorRegistry()
        registry.register(StoreCollector(store.stats))

        text = generate_latest(registry).decode()

    assert 'hybridai_edge_store_records_ingested_total{stream="alerts"} 1.0' in text
    assert 'hybridai_edge_store_records_deduplicated_total{stream="alerts"} 1.0' in text
    assert 'hybridai_edge_store_records_evicted_total{stream="alerts",synced="false"} 0.0' in text
    assert 'hybridai_edge_store_backlog_records{stream="alerts"} 1.0' in text
