"""The typed edge settings: validation, wire shape, and the merge of fleet/site/tag/device."""

from __future__ import annotations

import itertools
import json

import pytest
from pydantic import ValidationError

from hybridai.edge.edge_config import applied, effective
from hybridai.protocol.edge_settings import (
    DeviceSettings,
    EdgeConfig,
    merge,
    tag_order,
    window_spans,
)
from hybridai.protocol.fleet import DesiredState

LEVELS = ("default", "fleet", "site:a", "tag:line=3", "device:gw-1")


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"sync_bandwith_bytes_per_s": 10}, "sync_bandwith_bytes_per_s"),  # a typo
        ({"sync_bandwidth_bytes_per_s": 0}, "sync_bandwidth_bytes_per_s"),
        ({"sync_bandwidth_bytes_per_s": -5}, "sync_bandwidth_bytes_per_s"),
        ({"heartbeat_interval_s": 0}, "heartbeat_interval_s"),
        ({"store_quota_bytes": 0}, "store_quota_bytes"),
        ({"batch_max_wait_s": -1}, "batch_max_wait_s"),
        ({"sync_window": "soon"}, "sync_window"),
        ({"sync_window": "25:00-06:00"}, "sync_window"),
        ({"sync_window": "06:00-06:00"}, "sync_window"),
        ({"stream_priorities": {"alerts": "urgent"}}, "stream_priorities"),
        ({"stream_priorities": {"Bad Name": "low"}}, "stream_priorities"),
        ({"stream_compression": {"telemetry": {"fields": {}}}}, "stream_compression"),
        ({"stream_compression": {"telemetry": {"fields": {"t": -1}}}}, "stream_compression"),
        ({"stream_compression": {"telemetry": {"method": "zip", "fields": {"t": 1}}}}, "method"),
        ({"stream_compression": {"t": {"fields": {"x": 1}, "tolerance": 2}}}, "tolerance"),
        ({"site_peers": []}, "site_peers"),  # computed by the cloud, not an operator's knob
    ],
)
def test_invalid_settings_are_refused_naming_the_field(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EdgeConfig.model_validate(raw)
    assert where in str(caught.value)


def test_valid_settings_and_their_compact_wire_shape() -> None:
    config = EdgeConfig.model_validate(
        {
            "sync_bandwidth_bytes_per_s": 20_000,
            "sync_window": "22:00-06:00,12:00-13:00",
            "stream_priorities": {"telemetry": "low"},
            "stream_compression": {"telemetry": {"method": "deadband", "fields": {"t": 0.5}}},
        }
    )
    wire = json.loads(config.model_dump_json())
    assert wire == {
        "sync_bandwidth_bytes_per_s": 20_000.0,
        "sync_window": "22:00-06:00,12:00-13:00",
        "stream_priorities": {"telemetry": "low"},
        "stream_compression": {
            "telemetry": {"method": "deadband", "fields": {"t": 0.5}, "key": []}
        },
    }  # unset fields (None: inherit) are left out, nested ones too
    assert EdgeConfig.model_validate(wire) == config
    assert window_spans("22:00-06:00") == ((22 * 60, 6 * 60),)
    assert EdgeConfig(sync_window="").sync_window == ""  # explicitly "any time"


def test_a_desired_state_with_typed_settings_round_trips_and_ignores_newer_keys() -> None:
    desired = DesiredState(
        device_id="gw-1",
        generation="g",
        settings=DeviceSettings(sync_interval_s=2.0, token_public_key="PEM", site_peers=[]),
    )
    again = DesiredState.model_validate_json(desired.model_dump_json())
    assert again == desired and again.settings.sync_interval_s == 2.0
    newer = json.loads(desired.model_dump_json())
    newer["settings"]["a_knob_from_a_newer_cloud"] = 1
    assert DesiredState.model_validate(newer).settings == desired.settings


@pytest.mark.parametrize("setters", list(itertools.product([False, True], repeat=len(LEVELS))))
def test_the_most_specific_level_that_sets_a_field_wins(setters: tuple[bool, ...]) -> None:
    """Exhaustive over which of the five levels set a field (2^5 cases)."""
    levels = [
        (label, EdgeConfig(sync_interval_s=float(i + 1) if sets else None))
        for i, (label, sets) in enumerate(zip(LEVELS, setters, strict=True))
    ]
    merged = merge(levels)
    if not any(setters):
        assert merged.settings.sync_interval_s is None and merged.sources == {}
        return
    winner = max(i for i, sets in enumerate(setters) if sets)
    assert merged.settings.sync_interval_s == float(winner + 1)
    assert merged.sources == {"sync_interval_s": LEVELS[winner]}


def test_per_stream_maps_merge_stream_by_stream_and_scalars_whole() -> None:
    merged = merge(
        [
            ("fleet", EdgeConfig(stream_priorities={"telemetry": "low", "alerts": "high"})),
            ("site:a", EdgeConfig(stream_priorities={"alerts": "normal"}, sync_window="")),
            ("device:gw-1", EdgeConfig(stream_priorities={"vibration": "low"})),
        ]
    )
    assert merged.settings.stream_priorities == {
        "telemetry": "low",
        "alerts": "normal",
        "vibration": "low",
    }
    assert merged.sources == {
        "stream_priorities.alerts": "site:a",
        "stream_priorities.telemetry": "fleet",
        "stream_priorities.vibration": "device:gw-1",
        "sync_window": "site:a",
    }


def test_a_device_settings_level_merges_only_the_operator_knobs() -> None:
    merged = merge([("cloud", DeviceSettings(heartbeat_interval_s=3.0, token_public_key="PEM"))])
    assert merged.settings == EdgeConfig(heartbeat_interval_s=3.0)


def test_several_tags_apply_in_a_documented_order_the_first_key_wins() -> None:
    order = tag_order({"zone": "a", "line": "3", "area": "north"})
    assert order == ["zone=a", "line=3", "area=north"]  # least specific first: area wins
    merged = merge([(f"tag:{t}", EdgeConfig(batch_max_bytes=len(t))) for t in order])
    assert merged.sources["batch_max_bytes"] == "tag:area=north"


def test_the_edge_reports_each_setting_as_local_or_cloud() -> None:
    local = EdgeConfig(sync_interval_s=5.0, stream_priorities={"telemetry": "low"})
    cloud = DeviceSettings(sync_bandwidth_bytes_per_s=1000.0, stream_priorities={"x": "high"})
    shown = applied(effective(local, cloud))
    assert shown["sync_interval_s"].model_dump() == {"value": 5.0, "source": "local"}
    assert shown["sync_bandwidth_bytes_per_s"].model_dump() == {"value": 1000.0, "source": "cloud"}
    assert shown["stream_priorities.telemetry"].source == "local"
    assert shown["stream_priorities.x"].model_dump() == {"value": "high", "source": "cloud"}
