"""One device cannot block a stream for the fleet (issue 11.5), through real processes.

Device A syncs a field with the wrong type first, so its rows create the lake table; the
operator declares the right type with ``retype`` (the declaration wins over the first writer),
device B, with the declared type, then lands every batch, and what A keeps sending is
quarantined: kept in the cloud, acknowledged so A's sync moves on, and shown in A's status, the
fleet view and the quarantine listing, by field and type, never by value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _fleet import ingest, local_fleet
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow

STREAM = "press_readings"
WRONG = "overheat-7c1e"  # A's string in a number field: must never be quoted anywhere
SCHEMA = f"/api/v1/streams/{STREAM}/schema"


@pytest.fixture
def two_devices(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet") as fleet:
        fleet.start_edge("dev-a", "site-a")
        fleet.start_edge("dev-b", "site-b")
        fleet.wait_enrolled(2)
        yield fleet


def _rows(n: int, temp: object, start: float) -> list[dict[str, object]]:
    return [{"ts": start + i, "machine": "m1", "temp": temp} for i in range(n)]


def _count(fleet: LocalFleet, where: str) -> int:
    return fleet.lake_count(f"SELECT count(*) FROM {STREAM} WHERE {where}")


def _wait_rows(fleet: LocalFleet, where: str, rows: int) -> None:
    wait_for(f"{rows} rows where {where}", lambda: _count(fleet, where) == rows, 60)


def test_a_wrong_first_writer_cannot_block_the_declared_type(two_devices: LocalFleet) -> None:
    fleet = two_devices
    a, b = fleet.edges["dev-a"].url, fleet.edges["dev-b"].url
    now = time.time()
    assert ingest(a, STREAM, _rows(3, WRONG, now)).status_code == 200
    wait_for("A's rows to create the table", lambda: _count(fleet, "true") == 3, 60)

    assert fleet.api is not None
    plain = fleet.api.put(SCHEMA, json={"fields": {"temp": "number", "machine": "string"}})
    assert plain.status_code == 409 and "--retype" in plain.json()["error"], plain.text
    declared = fleet.api.put(
        SCHEMA,
        json={"fields": {"temp": "number", "machine": "string"}},
        params={"retype": "true"},
    )
    assert declared.status_code == 200, declared.text
    assert _count(fleet, "device_id = 'dev-a'") == 0  # A's misfit rows left the table

    for k in range(3):  # B, with the declared type, lands every batch
        assert ingest(b, STREAM, _rows(5, 20.5 + k, now + 10 * k)).status_code == 200
        _wait_rows(fleet, "device_id = 'dev-b'", 5 * (k + 1))

    # A's own data typed the field as a string, so A refused the declaration and goes on
    # sending strings: quarantined, acknowledged, and A's other data still syncs.
    assert ingest(a, STREAM, _rows(2, WRONG, now + 100)).status_code == 200
    assert ingest(a, "press_events", [{"ts": now, "event": "start"}]).status_code == 200
    wait_for(
        "A to hear its batch was quarantined",
        lambda: fleet.edge_status("dev-a")["store"]["batches_quarantined"] >= 1,
        60,
    )
    wait_for(
        "A's other stream", lambda: fleet.lake_count("SELECT count(*) FROM press_events") == 1, 60
    )
    store = fleet.edge_status("dev-a")["store"]
    assert store["backlog_records"] == 0
    assert "field 'temp' is string" in store["last_quarantine"]
    assert fleet.edge_status("dev-b")["store"]["batches_quarantined"] == 0

    devices = {d["device_id"]: d for d in fleet.call("GET", "/api/v1/devices")}
    assert devices["dev-a"]["quarantined_batches"] == 2  # the retyped rows and the new batch
    assert devices["dev-b"]["quarantined_batches"] == 0
    kept = fleet.call("GET", "/api/v1/quarantine", params={"device_id": "dev-a"})
    assert {k["batch_seq"] is None for k in kept} == {True, False}
    assert sum(k["records"] for k in kept) == 5 and {k["stream"] for k in kept} == {STREAM}
    assert fleet.call("GET", "/api/v1/quarantine", params={"device_id": "dev-b"}) == []

    assert ingest(b, STREAM, _rows(5, 30.0, now + 200)).status_code == 200  # B never waits
    wait_for("B's last batch", lambda: _count(fleet, "device_id = 'dev-b'") == 20, 60)
    types = fleet.call(
        "POST", "/api/v1/lake/query", json={"sql": f"SELECT typeof(temp) FROM {STREAM} LIMIT 1"}
    )
    assert types["rows"] == [["DOUBLE"]]

    audit = fleet.call("GET", "/api/v1/audit")
    assert WRONG not in str(audit) and WRONG not in str(kept) and WRONG not in str(devices)
