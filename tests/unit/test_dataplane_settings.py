"""Data-plane rules from the edge settings, overridden by the desired state; and /metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from hybridai.edge.dataplane import DataPlane
from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.store.metrics import StoreCollector
from hybridai.protocol.edge_settings import DeviceSettings


def test_desired_state_overrides_settings_and_bad_values_keep_the_last_good(
    tmp_path: Path,
) -> None:
    settings = EdgeSettings(
        data_dir=tmp_path,
        stream_priorities={"vibration": "low"},
        store_quota_bytes=10_000,
        sync_window="22:00-06:00",
    )
    with EdgeStore(tmp_path / "edge.db") as store:
        plane = DataPlane(settings, store)
        assert store.config.quota_bytes == 10_000 and plane.window is not None
        assert store.config.priority("vibration") == 0 and store.config.priority("alerts") == 2

        desired = DeviceSettings(
            stream_priorities={"alerts": "normal"},
            store_quota_bytes=50_000,
            sync_bandwidth_bytes_per_s=1000,
            sync_window="",  # the cloud lifts the edge's own window: sync at any time
        )
        assert plane.apply(desired)
        assert store.config.quota_bytes == 50_000 and plane.bandwidth == 1000.0
        assert store.config.priority("vibration") == 0 and store.config.priority("alerts") == 1
        assert plane.window is None
        assert not plane.apply(desired.model_copy())  # the same settings: nothing to do


def test_a_setting_that_cannot_be_applied_is_reported_and_the_last_good_rules_stay(
    tmp_path: Path,
) -> None:
    settings = EdgeSettings(data_dir=tmp_path, stream_priorities={"vibration": "urgent"})
    with EdgeStore(tmp_path / "edge.db") as store:
        plane = DataPlane(settings, store)
        assert plane.error is not None and "vibration" in plane.error
        assert store.config.priority("vibration") == 1  # the store's defaults stay in force

        assert not plane.apply(DeviceSettings(store_quota_bytes=5_000))  # still the bad value
        assert store.config.quota_bytes is None and plane.error is not None

        assert plane.apply(DeviceSettings(stream_priorities={"vibration": "low"}))
        assert plane.error is None and store.config.priority("vibration") == 0


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
