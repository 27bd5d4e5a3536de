"""Batch ingest over HTTP in three formats, with per-stream schemas (the edge app in-process)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from hybridai.edge.agent import EdgeAgent
from hybridai.edge.app import create_app
from hybridai.edge.ingest.formats import encode_arrow, encode_msgpack
from hybridai.edge.ingest.schemas import StreamSchema
from hybridai.edge.settings import EdgeSettings

PATH = "/api/v1/streams/{}/records"
RECORDS = [
    {"ts": 1_700_000_000.0 + i, "machine_id": f"m{i % 3}", "vibration": 1.5 + i, "rpm": 1500 + i}
    for i in range(50)
]
Encoder = Callable[[list[dict[str, Any]]], tuple[bytes, str]]
FORMATS: dict[str, Encoder] = {
    "json": lambda r: (_json(r), "application/json"),
    "msgpack": lambda r: (encode_msgpack(r), "application/msgpack"),
    "arrow": lambda r: (encode_arrow(r), "application/vnd.apache.arrow.stream"),
}


def _json(records: list[dict[str, Any]]) -> bytes:
    import json

    return json.dumps({"records": records}).encode()


def _agent(path: Path, schemas: dict[str, StreamSchema] | None = None) -> EdgeAgent:
    settings = EdgeSettings(
        data_dir=path,
        device_id="gw-1",
        cloud_url="https://127.0.0.1:9",
        stream_schemas=schemas or {},
        lan_auth="open",  # formats are tested here; site keys in tests/security
    )
    return EdgeAgent(settings)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[EdgeAgent]:
    built = _agent(
        tmp_path / "edge",
        {
            "strict": StreamSchema(
                fields={"machine_id": "string", "vibration": "number", "count": "integer"},
                required=["machine_id"],
                closed=True,
            )
        },
    )
    yield built
    built.store.close()


@pytest.fixture
def edge(agent: EdgeAgent) -> TestClient:
    return TestClient(create_app(agent))


def post(edge: TestClient, stream: str, records: list[dict[str, Any]], fmt: str) -> Any:
    body, content_type = FORMATS[fmt](records)
    return edge.post(PATH.format(stream), content=body, headers={"Content-Type": content_type})


def stored(agent: EdgeAgent) -> list[tuple[float, dict[str, Any]]]:
    batch = agent.store.next_batch(max_records=10_000)
    assert batch is not None
    return [(r.ts, r.payload) for r in batch.records]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_stores_the_records_it_carries(
    edge: TestClient, agent: EdgeAgent, fmt: str
) -> None:
    response = post(edge, "telemetry", RECORDS, fmt)
    assert response.status_code == 200, response.text
    assert response.json() == {"stream": "telemetry", "accepted": 50, "duplicates": 0}
    expected = [(r["ts"], {k: v for k, v in r.items() if k != "ts"}) for r in RECORDS]
    assert stored(agent) == expected


def test_the_formats_store_identical_records(edge: TestClient) -> None:
    """The same records in another format hash the same: all duplicates, nothing stored twice."""
    assert post(edge, "telemetry", RECORDS, "json").json()["accepted"] == 50
    for fmt in ("msgpack", "arrow"):
        assert post(edge, "telemetry", RECORDS, fmt).json() == {
            "stream": "telemetry",
            "accepted": 0,
            "duplicates": 50,
        }


def test_arrow_nulls_are_absent_fields_and_timestamps_become_seconds(
    edge: TestClient, agent: EdgeAgent
) -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 250_000, tzinfo=dt.UTC)
    table = pa.table(
        {
            "ts": pa.array([when, when + dt.timedelta(seconds=1)], pa.timestamp("us", tz="UTC")),
            "machine_id": ["a", "b"],
            "alarm": pa.array([None, "hot"], pa.string()),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = edge.post(
        PATH.format("events"),
        content=sink.getvalue().to_pybytes(),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert response.status_code == 200, response.text
    assert stored(agent) == [
        (when.timestamp(), {"machine_id": "a"}),
        (when.timestamp() + 1, {"machine_id": "b", "alarm": "hot"}),
    ]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_other_media_types_are_refused_with_415(
    edge: TestClient, agent: EdgeAgent, content_type: str
) -> None:
    response = edge.post(
        PATH.format("telemetry"), content=_json(RECORDS), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert "application/msgpack" in response.json()["error"]
    assert agent.store.stats().records_ingested == 0


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("application/json", b'{"records": [{"ts": 1', "malformed_json"),
        ("application/msgpack", b"\xc1\xc1", "bad_request"),
        ("application/msgpack", msgpack.packb([1, 2]), "bad_request"),
        ("application/vnd.apache.arrow.stream", b"not arrow at all", "bad_request"),
    ],
)
def test_bodies_that_do_not_parse_are_refused(
    edge: TestClient, content_type: str, body: bytes, code: str
) -> None:
    response = edge.post(
        PATH.format("telemetry"), content=body, headers={"Content-Type": content_type}
    )
    assert (response.status_code, response.json()["code"]) == (400, code)


GOOD = {"ts": 1_700_000_000.0, "machine_id": "m1", "vibration": 1.0, "count": 3}
MISFITS = {
    "missing required field": ({"ts": 1_700_000_001.0, "vibration": 1.0}, "machine_id"),
    "wrong type": ({"ts": 1_700_000_002.0, "machine_id": "m1", "vibration": "high"}, "vibration"),
    "float for integer": ({"ts": 1_700_000_003.0, "machine_id": "m1", "count": 2.5}, "count"),
    "unknown field": ({"ts": 1_700_000_004.0, "machine_id": "m1", "colour": "red"}, "colour"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("misfit", MISFITS)
def test_a_record_that_does_not_fit_a_declared_schema_refuses_its_batch(
    edge: TestClient, agent: EdgeAgent, fmt: str, misfit: str
) -> None:
    record, field = MISFITS[misfit]
    # An Arrow column holds one type, so there the misfit travels in a batch of its own.
    batch = [record] if fmt == "arrow" else [GOOD, record]
    response = post(edge, "strict", batch, fmt)
    assert (response.status_code, response.json()["code"]) == (400, "schema_mismatch")
    assert f"record {len(batch) - 1}" in response.json()["error"]
    assert field in response.json()["error"]
    assert agent.store.stats().records_ingested == 0  # nothing of that batch
    assert post(edge, "strict", [GOOD], fmt).json()["accepted"] == 1


def test_an_inferred_schema_holds_types_grows_and_survives_a_restart(tmp_path: Path) -> None:
    agent = _agent(tmp_path / "edge")
    edge = TestClient(create_app(agent))
    assert (
        post(edge, "plant", [{"ts": 1.0, "machine_id": "m1", "temp": 60.5}], "json").status_code
        == 200
    )
    # A field may be absent (none is inferred required), and new fields join the schema.
    assert (
        post(edge, "plant", [{"ts": 2.0, "machine_id": "m1", "rpm": 1500}], "msgpack").status_code
        == 200
    )
    wrong = post(edge, "plant", [{"ts": 3.0, "machine_id": 7}], "json")
    assert (wrong.status_code, wrong.json()["code"]) == (400, "schema_mismatch")
    agent.store.close()
    agent.instance_lock.release()  # as a stopped agent does: the restart takes it

    again = _agent(tmp_path / "edge")
    edge = TestClient(create_app(again))
    for misfit in ({"ts": 4.0, "temp": "warm"}, {"ts": 5.0, "rpm": "fast"}):
        response = post(edge, "plant", [misfit], "arrow")
        assert response.json()["code"] == "schema_mismatch", misfit
    # Within one batch, a field's type must agree with itself too.
    mixed = post(edge, "other", [{"ts": 1.0, "x": 1.0}, {"ts": 2.0, "x": "one"}], "json")
    assert mixed.json()["code"] == "schema_mismatch"
    again.store.close()
