"""The edge settings service on the metadata store (SQLite, and PostgreSQL when there).

Levels are stored per scope, merged per device (device > tag > site > fleet > defaults), and
the merged settings move the device's desired-state generation (the ETag its long-poll waits
on) exactly when they change.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from hybridai.cloud.devices import device_settings as ds
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.protocol.edge_settings import DeviceSettings, EdgeConfig
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.storage.tables import DeviceRow

DEFAULTS = EdgeConfig(sync_interval_s=1.0, heartbeat_interval_s=1.0)


@pytest.fixture
def devices(db: Session) -> Session:
    for device, site, tags in (
        ("gw-1", "north", {"line": "3", "zone": "a"}),
        ("gw-2", "north", {}),
        ("gw-3", "south", {"line": "3"}),
    ):
        db.add(
            DeviceRow(
                device_id=device,
                site=site,
                kind="edge-server",
                capabilities={"cores": 1, "memory_mb": 1},
                enrolled_at=1.0,
                tags=tags,
            )
        )
    db.commit()
    return db


def _set(db: Session, scope: str, **values: object) -> None:
    level, name = ds.parse_scope(scope)
    ds.set_level(db, level, name, ds.validate(values), "otto", 10.0)


def _effective(db: Session, device: str) -> tuple[dict[str, object], dict[str, str]]:
    view = ds.effective(db, device, DEFAULTS)
    return view.settings.model_dump(mode="json"), view.sources


def test_levels_merge_most_specific_first_and_unset_falls_back(devices: Session) -> None:
    db = devices
    _set(db, "fleet", sync_bandwidth_bytes_per_s=1000, stream_priorities={"telemetry": "low"})
    _set(db, "site:north", sync_bandwidth_bytes_per_s=2000)
    _set(db, "tag:zone=a", batch_max_bytes=100, sync_window="01:00-02:00")
    _set(db, "tag:line=3", batch_max_bytes=300, sync_window="03:00-04:00")
    _set(db, "device:gw-1", stream_priorities={"alerts": "normal"})

    settings, sources = _effective(db, "gw-1")
    assert settings["sync_bandwidth_bytes_per_s"] == 2000.0
    assert sources["sync_bandwidth_bytes_per_s"] == "site:north"
    assert (settings["batch_max_bytes"], sources["batch_max_bytes"]) == (300, "tag:line=3")
    assert settings["stream_priorities"] == {"telemetry": "low", "alerts": "normal"}
    assert sources["sync_interval_s"] == "default"

    settings, sources = _effective(db, "gw-3")  # another site, the same tag
    assert sources["sync_bandwidth_bytes_per_s"] == "fleet"
    assert sources["batch_max_bytes"] == "tag:line=3"
    settings, sources = _effective(db, "gw-2")  # no tags
    assert "batch_max_bytes" not in settings

    level, name = ds.parse_scope("tag:line=3")
    ds.unset_level(db, level, name, ["batch_max_bytes"], "otto", 11.0)
    settings, sources = _effective(db, "gw-1")
    assert (settings["batch_max_bytes"], sources["batch_max_bytes"]) == (100, "tag:zone=a")
    level, name = ds.parse_scope("fleet")
    left = ds.unset_level(db, level, name, ["stream_priorities.telemetry"], "otto", 12.0)
    assert left is not None and "stream_priorities" not in left.settings.model_dump()
    assert ds.unset_level(db, level, name, [], "otto", 13.0) is None  # the whole level
    assert [(x.level, x.name) for x in ds.list_levels(db)] == [
        ("site", "north"),
        ("tag", "line=3"),
        ("tag", "zone=a"),
        ("device", "gw-1"),
    ]


def test_set_keeps_the_levels_other_settings_and_merges_streams(devices: Session) -> None:
    db = devices
    _set(db, "site:north", sync_window="22:00-06:00", stream_priorities={"a": "low"})
    _set(db, "site:north", stream_priorities={"b": "high"})
    [level] = ds.list_levels(db)
    assert level.updated_by == "otto"
    assert level.settings.model_dump(mode="json") == {
        "sync_window": "22:00-06:00",
        "stream_priorities": {"a": "low", "b": "high"},
    }


def test_the_desired_state_generation_moves_exactly_when_the_settings_do(
    devices: Session,
) -> None:
    db = devices

    def generation(device: str) -> str:
        merged = ds.merged_for(db, db.get(DeviceRow, device), DEFAULTS).settings
        return desired_state(
            db, device, DeviceSettings.model_validate(merged.model_dump())
        ).generation

    first = generation("gw-1")
    assert generation("gw-1") == first  # stable for equal settings
    _set(db, "site:south", sync_bandwidth_bytes_per_s=10)
    assert generation("gw-1") == first  # another site's change does not wake gw-1
    _set(db, "site:north", sync_bandwidth_bytes_per_s=10)
    changed = generation("gw-1")
    assert changed != first
    _set(db, "site:north", sync_bandwidth_bytes_per_s=10)  # the same value again
    assert generation("gw-1") == changed


@pytest.mark.parametrize(
    ("scope", "status", "code"),
    [
        ("planet", 400, ErrorCode.INVALID_INPUT),
        ("site:", 400, ErrorCode.INVALID_INPUT),
        ("site:North Side", 400, ErrorCode.INVALID_INPUT),
        ("tag:line", 400, ErrorCode.INVALID_INPUT),
        ("tag:Line=3", 400, ErrorCode.INVALID_INPUT),
        ("device:gw-9", 404, ErrorCode.UNKNOWN_DEVICE),
    ],
)
def test_bad_scopes_are_refused(devices: Session, scope: str, status: int, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        _set(devices, scope, sync_interval_s=2)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert ds.list_levels(devices) == []


def test_invalid_values_are_a_422_that_names_each_setting(devices: Session) -> None:
    with pytest.raises(ApiError) as caught:
        ds.validate({"sync_bandwidth_bytes_per_s": 0, "sync_windw": "x", "site_peers": []})
    error = caught.value
    assert (error.status, error.code) == (422, ErrorCode.INVALID_INPUT)
    assert "sync_bandwidth_bytes_per_s: Input should be greater than 0" in error.message
    assert "unknown setting 'sync_windw'" in error.message
    assert "site_peers is computed by the cloud" in error.message
    with pytest.raises(ApiError) as caught:
        ds.unset_level(devices, "fleet", "", ["sync_windw", "sync_window.x"], "otto", 1.0)
    assert caught.value.status == 422 and "sync_windw" in caught.value.message
