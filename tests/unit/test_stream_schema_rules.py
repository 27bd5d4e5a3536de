"""Declared stream schemas: what may change, site over fleet, merging onto the edge's schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from rich.console import Console

from hybridai.cli.edge import mqtt_table, schema_table
from hybridai.edge.ingest.declared_schemas import DeclaredSchemas
from hybridai.edge.ingest.intake import Ingest
from hybridai.edge.ingest.mqtt_metrics import MqttCollector
from hybridai.edge.ingest.schemas import (
    SchemaConflict,
    SchemaRegistry,
    SchemaViolation,
    StreamSchema,
    merge,
)
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.protocol.fleet import MqttStats
from hybridai.protocol.streams import (
    DeclaredSpec,
    SchemaSpec,
    StreamSchemaDeclaration,
    applicable,
    conflicts,
    type_change_allowed,
)


class Meta:
    """The store's metadata as the registry sees it; a second registry over it is a restart."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get_meta(self, key: str) -> str | None:
        return self.data.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.data[key] = value


def spec(fields: dict[str, Any], **rest: Any) -> SchemaSpec:
    return SchemaSpec(fields=fields, **rest)


def declaration(stream: str, site: str | None, fields: dict[str, Any]) -> StreamSchemaDeclaration:
    return StreamSchemaDeclaration(stream=stream, site=site, fields=fields)


# -- the contract -----------------------------------------------------------------------------


def test_a_field_keeps_its_type_except_number_narrowed_to_integer() -> None:
    assert type_change_allowed("string", "string")
    assert type_change_allowed("number", "integer")
    assert not type_change_allowed("integer", "number")  # floats would not fit the column
    assert not type_change_allowed("number", "string")
    current = {"machine": "string", "temp": "number", "count": "integer"}
    assert conflicts(current, {"machine": "string", "rpm": "integer"}) == []  # evolution
    assert conflicts(current, {"temp": "integer"}) == []
    assert conflicts(current, {"temp": "string", "count": "number", "new": "boolean"}) == [
        "field 'count' is integer, cannot become number",
        "field 'temp' is number, cannot become string",
    ]


def test_a_sites_declaration_replaces_the_fleets_for_that_stream_only() -> None:
    declared = [
        declaration("telemetry", "north", {"temp": "integer"}),
        declaration("telemetry", None, {"temp": "number", "machine": "string"}),
        declaration("alerts", None, {"level": "integer"}),
        declaration("alerts", "south", {"level": "integer", "why": "string"}),
    ]
    north = applicable(declared, "north")
    assert north["telemetry"].fields == {"temp": "integer"}
    assert north["alerts"].fields == {"level": "integer"}
    assert applicable(declared, "east")["telemetry"].fields == {
        "temp": "number",
        "machine": "string",
    }
    assert applicable(declared, "south")["alerts"].fields == {"level": "integer", "why": "string"}
    assert applicable([], "north") == {}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"fields": {"ts": "number"}}, "timestamp"),
        ({"fields": {"a b": "string"}}, "must match"),
        ({"fields": {"a": "text"}}, "string"),
        ({"fields": {"a": "string"}, "required": ["b"]}, "also be declared"),
    ],
)
def test_a_declaration_names_typed_fields_only(body: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        DeclaredSpec.model_validate(body)


# -- merging onto the edge's schema -----------------------------------------------------------


def test_an_open_declaration_keeps_the_fields_the_edge_knew() -> None:
    inferred = StreamSchema(fields={"machine": "string", "temp": "number"}, inferred=True)
    merged = merge("telemetry", inferred, spec({"temp": "integer", "rpm": "integer"}))
    assert merged.fields == {"machine": "string", "temp": "integer", "rpm": "integer"}
    assert merged.from_cloud and not merged.inferred
    closed = merge("telemetry", inferred, spec({"temp": "number"}, closed=True))
    assert closed.fields == {"temp": "number"} and closed.closed
    assert merge("new", None, spec({"a": "string"}, required=["a"])).required == ["a"]


def test_a_retyped_field_is_refused_with_the_reason() -> None:
    inferred = StreamSchema(fields={"temp": "number"}, inferred=True)
    with pytest.raises(SchemaConflict, match="field 'temp' is number, cannot become string"):
        merge("telemetry", inferred, spec({"temp": "string"}))


def test_the_clouds_schema_wins_over_the_settings_and_survives_a_restart() -> None:
    meta = Meta()
    settings = {"telemetry": StreamSchema(fields={"temp": "number"})}
    registry = SchemaRegistry(meta, settings)
    registry.declare("telemetry", spec({"machine": "string"}, required=["machine"]))
    enforced = registry.get("telemetry")
    assert enforced is not None and enforced.from_cloud
    assert enforced.fields == {"temp": "number", "machine": "string"}
    with pytest.raises(SchemaViolation, match="missing required field 'machine'"):
        registry.admit("telemetry", [{"ts": 1.0, "temp": 2.0}])
    grown = registry.admit("telemetry", [{"ts": 1.0, "machine": "m", "rpm": 3}])
    assert grown is not None
    registry.save("telemetry", grown)  # a cloud schema grows like an inferred one

    restarted = SchemaRegistry(meta, settings)
    again = restarted.get("telemetry")
    assert again is not None and again.fields["rpm"] == "number" and again.from_cloud
    assert restarted.cloud_streams() == ["telemetry"]


def test_a_refused_declaration_changes_nothing() -> None:
    meta = Meta()
    registry = SchemaRegistry(meta, {})
    registry.save("telemetry", StreamSchema(fields={"temp": "number"}, inferred=True))
    before = dict(meta.data)
    with pytest.raises(SchemaConflict):
        registry.declare("telemetry", spec({"temp": "boolean"}))
    assert meta.data == before
    assert registry.cloud_streams() == []


def test_a_withdrawn_schema_keeps_types_but_no_longer_requires_or_closes() -> None:
    meta = Meta()
    settings = {"alerts": StreamSchema(fields={"level": "integer"}, required=["level"])}
    registry = SchemaRegistry(meta, settings)
    registry.declare("telemetry", spec({"temp": "number"}, required=["temp"], closed=True))
    registry.declare("alerts", spec({"why": "string"}))
    assert registry.withdraw(keep=["alerts"]) == ["telemetry"]
    after = registry.get("telemetry")
    assert after is not None
    assert after.fields == {"temp": "number"} and not after.required and not after.closed
    registry.admit("telemetry", [{"ts": 1.0, "other": "x"}])  # open again
    with pytest.raises(SchemaViolation, match="must be a number"):
        registry.admit("telemetry", [{"ts": 1.0, "temp": "hot"}])  # the type stays
    assert registry.withdraw(keep=[]) == ["alerts"]
    assert registry.get("alerts") == settings["alerts"]  # the settings' schema again
    assert registry.cloud_streams() == []


# -- applying the desired state ---------------------------------------------------------------


def test_declared_schemas_apply_once_and_report_refusals(tmp_path: Path) -> None:
    desired: dict[str, SchemaSpec] | None = None
    with EdgeStore(tmp_path / "store.db") as store:
        ingest = Ingest(store, {})
        schemas = DeclaredSchemas(ingest, lambda: desired)
        ingest.write("telemetry", [{"ts": 1.0, "temp": 20.5}])  # inferred: temp is a number
        assert not schemas.apply() and schemas.report() == {}  # no desired state yet

        desired = {
            "readings": spec({"machine": "string"}, required=["machine"], closed=True),
            "telemetry": spec({"temp": "string"}),
        }
        assert schemas.apply()
        assert not schemas.apply()  # unchanged: nothing to do
        report = schemas.report()
        assert report["readings"].applied and report["readings"].error is None
        assert report["telemetry"].applied is False
        assert "field 'temp' is number, cannot become string" in (report["telemetry"].error or "")
        enforced = report["telemetry"].enforced
        assert enforced is not None and enforced.fields == {"temp": "number"}

        with pytest.raises(SchemaViolation, match="unknown field 'temp'"):
            ingest.write("readings", [{"ts": 1.0, "machine": "m1", "temp": 3.0}])
        with pytest.raises(SchemaViolation, match="missing required field 'machine'"):
            ingest.write("readings", [{"ts": 1.0}])
        assert ingest.write("readings", [{"ts": 1.0, "machine": "m1"}]).accepted == 1
        assert ingest.write("telemetry", [{"ts": 2.0, "temp": 21.0}]).accepted == 1  # unbroken

        desired = {"readings": spec({"machine": "string", "temp": "number"}, closed=True)}
        assert schemas.apply()
        assert ingest.write("readings", [{"ts": 2.0, "machine": "m1", "temp": 3.0}]).accepted
        assert set(schemas.report()) == {"readings"}


# -- how the counters are shown ---------------------------------------------------------------


def test_mqtt_counters_reach_prometheus_and_the_status_tables() -> None:
    stats = MqttStats(
        connected=True,
        connected_since=1.0,
        reconnects=2,
        messages_received=7,
        records_stored=4,
        records_duplicate=1,
        messages_dead_lettered=2,
        dead_lettered_by_reason={"malformed": 1, "schema": 1, "invalid_record": 0, "unrouted": 0},
    )
    registry = CollectorRegistry()
    registry.register(MqttCollector(lambda: stats))
    text = generate_latest(registry).decode()
    assert "hybridai_edge_mqtt_messages_received_total 7.0" in text
    assert "hybridai_edge_mqtt_records_duplicate_total 1.0" in text
    assert 'hybridai_edge_mqtt_messages_dead_lettered_total{reason="schema"} 1.0' in text
    assert "hybridai_edge_mqtt_reconnects_total 2.0" in text
    assert "hybridai_edge_mqtt_connected 1.0" in text

    console = Console(width=200, record=True)
    console.print(mqtt_table(stats.model_dump()))
    console.print(
        schema_table(
            {
                "telemetry": {
                    "applied": False,
                    "error": "field 'temp' is number, cannot become string [x]",
                    "enforced": {"fields": {"temp": "number"}, "required": [], "closed": False},
                }
            }
        )
    )
    shown = console.export_text()
    assert "dead-lettered" in shown and "2 (malformed 1, schema 1)" in shown
    assert "refused" in shown and "cannot become string [x]" in shown and "temp:number" in shown
