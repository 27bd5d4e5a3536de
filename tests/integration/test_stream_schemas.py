"""Stream schemas declared in the cloud: the API (RBAC, audit, conflicts) on every backend,
then through a real cloud and edge: a declared schema reaches the edge, a record that does not
fit is refused with ``schema_mismatch``, and a retyping the edge refuses shows in the fleet view.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _fleet import ingest, local_fleet
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.data import stream_schemas
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.settings import CloudSettings
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.governance import audit
from hybridai.storage.tables import DeviceRow

PATH = "/api/v1/streams/telemetry/schema"
LOCAL = "site_notes"  # kept on site by a restricted policy


@pytest.fixture
def cloud(metadata_url: str, tmp_path: Path) -> Iterator[Cloud]:
    opened = open_cloud(CloudSettings(data_dir=tmp_path / "cloud", database_url=metadata_url))
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    admin = cloud.settings.admin_token_path.read_text().strip()
    with TestClient(create_app(cloud), headers={"Authorization": f"Bearer {admin}"}) as client:
        yield client


def _put(api: TestClient, fields: dict[str, str], site: str | None = None, **rest: Any) -> Any:
    params = {"site": site} if site else {}
    return api.put(PATH, json={"fields": fields, **rest}, params=params)


def test_declarations_per_scope_and_what_each_site_gets(api: TestClient, cloud: Cloud) -> None:
    fleet = _put(api, {"machine": "string", "temp": "number"}, required=["machine"])
    assert fleet.status_code == 200, fleet.text
    assert fleet.json()["site"] is None and fleet.json()["updated_by"] == "bootstrap-admin"
    north = _put(api, {"machine": "string", "temp": "integer", "rpm": "integer"}, "north")
    assert north.status_code == 200, north.text

    with cloud.session() as session:
        assert stream_schemas.for_site(session, "north")["telemetry"].fields["temp"] == "integer"
        south = stream_schemas.for_site(session, "south")["telemetry"]
        assert south.fields == {"machine": "string", "temp": "number"}
        assert south.required == ["machine"]
        before = desired_state(session, "d1", {}, None, [], None).generation
        with_schemas = desired_state(session, "d1", {}, None, [], {"telemetry": south})
        assert with_schemas.generation != before  # the edge's long-poll wakes up
        assert with_schemas.stream_schemas == {"telemetry": south}

    listed = api.get("/api/v1/streams/schemas").json()
    assert [(d["stream"], d["site"]) for d in listed] == [
        ("telemetry", None),
        ("telemetry", "north"),
    ]
    view = api.get(PATH).json()
    assert view["fleet"]["fields"]["temp"] == "number" and set(view["sites"]) == {"north"}


def test_retyping_a_declared_field_is_refused_adding_one_is_not(api: TestClient) -> None:
    assert _put(api, {"temp": "number"}).status_code == 200
    again = _put(api, {"temp": "string"})
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert "field 'temp' is number, cannot become string" in again.json()["error"]
    site = _put(api, {"temp": "boolean"}, "north")  # one lake table holds every site's rows
    assert site.status_code == 409 and "every site's rows" in site.json()["error"]
    assert _put(api, {"temp": "integer", "rpm": "integer"}, "north").status_code == 200
    clash = _put(api, {"temp": "number", "rpm": "boolean"})  # north declares rpm an integer
    assert clash.status_code == 409 and "site 'north'" in clash.json()["error"]
    assert _put(api, {"temp": "number", "machine": "string"}).status_code == 200  # evolution

    assert api.get(PATH).json()["fleet"]["fields"] == {"temp": "number", "machine": "string"}
    bad = [
        api.put("/api/v1/streams/Bad-Name/schema", json={"fields": {}}),
        _put(api, {"temp": "number"}, site="North Site"),
        _put(api, {"ts": "number"}),
        _put(api, {"a": "string"}, required=["b"]),
    ]
    assert [r.status_code for r in bad] == [400] * 4, [r.text for r in bad]
    why = ["stream name 'Bad-Name'", "site 'North Site'", "timestamp", "also be declared"]
    assert all(w in r.json()["error"] for w, r in zip(why, bad, strict=True))


def test_a_declaration_that_contradicts_the_lake_is_refused(api: TestClient, cloud: Cloud) -> None:
    rows = {
        "record_id": ["gw:1"], "device_id": ["gw"], "site": ["north"], "ts": [1.7e9],
        "date": ["2023-11-14"], "temp": [61.5], "count": pa.array([3], pa.int64()),
        "machine": ["m1"],
    }  # fmt: skip
    cloud.lake.commit_batch("telemetry", "gw", 1, pa.table(rows))

    refused = _put(api, {"temp": "string", "machine": "string"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "conflict"
    assert "field 'temp' is number, cannot become string" in refused.json()["error"]
    assert "lake" in refused.json()["error"]
    assert _put(api, {"count": "number"}).status_code == 409  # floats into an int64 column
    fits = _put(api, {"temp": "integer", "count": "integer", "machine": "string", "new": "boolean"})
    assert fits.status_code == 200, fits.text  # narrowing number to integer, adding fields: fine


def test_only_operators_declare_and_every_attempt_is_audited(api: TestClient, cloud: Cloud) -> None:
    created = api.post("/api/v1/api-tokens", json={"name": "vera", "role": "viewer"})
    viewer = {"Authorization": f"Bearer {created.json()['token']}"}
    refused = api.put(PATH, json={"fields": {"temp": "number"}}, headers=viewer)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert api.get(PATH, headers=viewer).status_code == 200  # reading is allowed
    assert _put(api, {"temp": "number"}, "north").status_code == 200
    assert api.delete(PATH, params={"site": "north"}).status_code == 204
    missing = api.delete(PATH, params={"site": "north"})
    assert missing.status_code == 404 and "schema show telemetry" in missing.json()["error"]

    with cloud.session() as session:
        entries = audit.list_entries(session, action="/api/v1/streams/{stream}/schema")
    seen = [(e.action.split()[0], e.actor, e.result, e.target) for e in entries]
    assert seen == [
        ("PUT", "vera", "denied", "stream=telemetry,site=*"),
        ("PUT", "bootstrap-admin", "ok", "stream=telemetry,site=north"),
        ("DELETE", "bootstrap-admin", "ok", "stream=telemetry,site=north"),
        ("DELETE", "bootstrap-admin", "refused", "stream=telemetry,site=north"),
    ]


def test_the_view_gathers_each_devices_report(api: TestClient, cloud: Cloud) -> None:
    _put(api, {"temp": "number"})
    state = {"applied": False, "error": "field 'temp' is string, cannot become number"}
    with cloud.session() as session:
        for device, status in (("d1", {"stream_schemas": {"telemetry": state}}), ("d2", None)):
            session.add(
                DeviceRow(
                    device_id=device,
                    site="north",
                    kind="edge-server",
                    capabilities={"cores": 1, "memory_mb": 1},
                    enrolled_at=1.0,
                    status=status,
                )
            )
        session.commit()
    devices = api.get(PATH).json()["devices"]
    assert devices == {"d1": {**state, "enforced": None}}


# -- through real processes -------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet") as f:
        f.start_edge("edge-a", "site-north")
        f.wait_enrolled(1)
        yield f


def _cli(fleet: LocalFleet, *args: str) -> Any:
    assert fleet.cloud is not None
    token = (fleet.workspace / "cloud" / "admin.token").read_text().strip()
    result = CliRunner().invoke(
        cli,
        ["--ca-file", str(fleet.ca_file), *args, "--cloud", fleet.cloud.url, "--token", token],
    )
    assert result.exit_code == 0, result.output
    return result.output


def _schema_state(fleet: LocalFleet, stream: str) -> dict[str, Any] | None:
    state: dict[str, Any] | None = fleet.edge_status("edge-a")["stream_schemas"].get(stream)
    return state


@pytest.mark.slow
def test_a_declared_schema_reaches_the_edge_and_is_enforced(fleet: LocalFleet) -> None:
    edge = fleet.edges["edge-a"].url
    now = time.time()
    # Before any declaration the edge learns a stream's schema from its first batch. This one
    # is restricted, so it stays on site: only the edge's own records type its fields, and the
    # cloud (which refuses what contradicts the lake) has nothing to check a declaration by.
    fleet.call("PUT", f"/api/v1/policies/{LOCAL}", json={"classification": "restricted"})
    wait_for(
        "the edge to apply the policy",
        lambda: LOCAL in httpx.get(f"{edge}/api/v1/status", timeout=10).json()["policies"],
        30,
    )
    first = [{"ts": now, "machine": "m1", "temp": 20.5}]
    assert ingest(edge, LOCAL, first).status_code == 200

    _cli(
        fleet,
        "stream", "schema", "set", "readings",
        "--field", "machine:string", "--field", "temp:number", "--required", "machine", "--closed",
    )  # fmt: skip
    wait_for(
        "the edge to apply the readings schema",
        lambda: (_schema_state(fleet, "readings") or {}).get("applied") is True,
        30,
    )
    misfits = [
        ({"ts": now, "machine": 7, "temp": 1.0}, "field 'machine' must be a string"),
        ({"ts": now, "temp": 1.0}, "missing required field 'machine'"),
        ({"ts": now, "machine": "m1", "rpm": 3}, "unknown field 'rpm'"),
    ]
    for record, why in misfits:
        answer = ingest(edge, "readings", [record])
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "schema_mismatch" and why in answer.json()["error"]
    assert (
        ingest(edge, "readings", [{"ts": now, "machine": "m1", "temp": 1.0}]).json()["accepted"]
        == 1
    )

    # Schema evolution: a new field, declared, is accepted from then on.
    _cli(
        fleet,
        "stream", "schema", "set", "readings", "--field", "machine:string",
        "--field", "temp:number", "--field", "rpm:integer", "--required", "machine", "--closed",
    )  # fmt: skip
    wait_for(
        "the edge to apply the grown schema",
        lambda: (
            "rpm"
            in ((_schema_state(fleet, "readings") or {}).get("enforced") or {}).get("fields", {})
        ),
        30,
    )
    assert ingest(edge, "readings", [{"ts": now + 1, "machine": "m1", "rpm": 3}]).status_code == 200
    floats = ingest(edge, "readings", [{"ts": now + 2, "machine": "m1", "rpm": 3.5}])
    assert floats.status_code == 400 and floats.json()["code"] == "schema_mismatch"

    # A site declaration retyping what the edge already stores: refused there, and reported.
    _cli(
        fleet,
        "stream",
        "schema",
        "set",
        LOCAL,
        "--field",
        "temp:string",
        "--site",
        "site-north",
    )
    wait_for(
        "the edge to report the refusal",
        lambda: (_schema_state(fleet, LOCAL) or {}).get("applied") is False,
        30,
    )
    state = _schema_state(fleet, LOCAL)
    assert state is not None and "field 'temp' is number, cannot become string" in state["error"]
    assert ingest(edge, LOCAL, [{"ts": now + 1, "machine": "m1", "temp": 21.0}]).status_code == 200

    wait_for(
        "the refusal in the fleet view",
        lambda: (
            fleet.call("GET", f"/api/v1/streams/{LOCAL}/schema")["devices"]
            .get("edge-a", {})
            .get("applied")
            is False
        ),
        30,
    )
    shown = json.loads(_cli(fleet, "stream", "schema", "show", LOCAL, "--json"))
    assert shown["sites"]["site-north"]["fields"] == {"temp": "string"}
    assert "cannot become string" in shown["devices"]["edge-a"]["error"]
    (device,) = json.loads(_cli(fleet, "fleet", "list", "--json"))
    assert device["status"]["stream_schemas"][LOCAL]["applied"] is False
    status = httpx.get(f"{edge}/api/v1/status", timeout=10).json()
    assert status["stream_schemas"]["readings"]["applied"] is True
