"""Bad input at both doors of the data path: each refused with a 4xx and a stable code, or
handled as specified (a repeat is a duplicate), and nothing good is lost around it.

The doors are a real edge's ingest API (records from producers) and a real cloud's sync API
(Parquet batches from devices), one fleet shared by the module. Every case sends good records
before and after the bad request: the store count does not move for the refused one, and at
the end every acknowledged record is in the lake exactly once.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgpack
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _fleet import cloud_client, error_of, local_fleet
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.edge.ingest.formats import ARROW, JSON, MSGPACK, encode_arrow, encode_msgpack
from hybridai.link.tls import client_context
from hybridai.protocol import sync

pytestmark = pytest.mark.slow

DEVICE, SITE = "edge-m", "site-m"
LIMIT = 256 * 1024  # the edge's ingest body limit here (HYBRIDAI_EDGE_MAX_INGEST_BYTES)
DECLARED = {
    "fields": {"machine": "string", "value": "number", "count": "integer", "ok": "boolean"},
    "required": ["machine"],
    "closed": True,
}
BASE_TS = time.time() - 86400  # a day ago: every record of the module has its own second
Record = dict[str, Any]


class Edge:
    """The module's edge as a producer sees it, remembering every record it acknowledged."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self.url = fleet.edges[DEVICE].url
        self.acked: dict[str, list[Record]] = {}
        self._ts = itertools.count()

    def new_records(self, n: int) -> list[Record]:
        """Records that fit every stream here (the declared schema included), each unique."""
        return [
            {
                "ts": BASE_TS + next(self._ts),
                "machine": "m1",
                "value": 20.5 + i,
                "count": i,
                "ok": i % 2 == 0,
            }
            for i in range(n)
        ]

    def post(
        self, stream: str, body: bytes | Iterator[bytes], content_type: str = JSON
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/streams/{stream}/records",
            content=body,
            headers={"Content-Type": content_type},
            timeout=30,
        )

    def write(self, stream: str, records: list[Record]) -> dict[str, Any]:
        response = self.post(stream, json.dumps({"records": records}).encode())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        stored = [r for r in records if r not in self.acked.get(stream, [])]
        self.acked.setdefault(stream, []).extend(stored)
        return body

    def write_good(self, stream: str, n: int = 3) -> None:
        body = self.write(stream, self.new_records(n))
        assert body == {"stream": stream, "accepted": n, "duplicates": 0}, body

    def stats(self, stream: str) -> dict[str, int]:
        streams = self.fleet.edge_status(DEVICE)["store"]["streams"]
        found: dict[str, int] = streams.get(stream, {})
        return {k: found.get(k, 0) for k in ("records_ingested", "records_deduplicated")}

    def refuse(
        self,
        stream: str,
        body: bytes | Iterator[bytes],
        content_type: str,
        expected: tuple[int, str],
    ) -> str:
        """Good records, the bad request, good records: the bad one gets ``expected`` (status,
        code) and moves no count; the good ones around it are stored. Returns the message."""
        self.write_good(stream)
        before = self.stats(stream)
        response = self.post(stream, body, content_type)
        after = self.stats(stream)
        self.write_good(stream)
        assert error_of(response) == expected, response.text
        assert after == before, f"a refused request changed the store: {before} -> {after}"
        message: str = response.json()["error"]
        return message


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    workspace = tmp_path_factory.mktemp("malformed") / "fleet"
    with local_fleet(workspace, {"HYBRIDAI_CLOUD_SYNC_INTERVAL_S": "0.2"}) as fleet:
        fleet.start_edge(
            DEVICE,
            SITE,
            env={
                "HYBRIDAI_EDGE_MAX_INGEST_BYTES": str(LIMIT),
                "HYBRIDAI_EDGE_STREAM_SCHEMAS": json.dumps({"declared": DECLARED}),
                "HYBRIDAI_EDGE_BATCH_MAX_WAIT_S": "0",
            },
        )
        fleet.wait_enrolled(1)
        yield fleet


@pytest.fixture(scope="module")
def edge(fleet: LocalFleet) -> Edge:
    return Edge(fleet)


def _envelope(*records: Any) -> bytes:
    return json.dumps({"records": list(records)}).encode()


def _arrow_with_invalid_utf8() -> bytes:
    """An Arrow IPC stream whose string column holds bytes that are not UTF-8."""
    data = pa.py_buffer(b"m1\xff\xfe")
    offsets = pa.array([0, 2, 4], type=pa.int32()).buffers()[1]
    machine = pa.Array.from_buffers(pa.string(), 2, [None, offsets, data])
    table = pa.table({"ts": pa.array([BASE_TS, BASE_TS + 1]), "machine": machine})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


NAN = float("nan")
MALFORMED = [
    # Bodies that are not the envelope {"records": [{...}, ...]}.
    pytest.param(b"this is not json", JSON, (400, "malformed_json"), id="not-json"),
    pytest.param(b'{"records": [{"ts": 1', JSON, (400, "malformed_json"), id="truncated-json"),
    pytest.param(b"", JSON, (400, "malformed_json"), id="empty-body"),
    pytest.param(b'[{"ts": 1.0}]', JSON, (400, "bad_request"), id="no-envelope"),
    pytest.param(b'{"records": {"ts": 1.0}}', JSON, (400, "bad_request"), id="records-not-a-list"),
    pytest.param(_envelope(1, 2), JSON, (400, "bad_request"), id="records-not-objects"),
    pytest.param(_envelope({"ts": 1.0}, "x"), JSON, (400, "bad_request"), id="one-not-an-object"),
    pytest.param(b"\xc1\x00", MSGPACK, (400, "bad_request"), id="not-msgpack"),
    pytest.param(msgpack.packb({"records": [7]}), MSGPACK, (400, "bad_request"), id="msgpack-7"),
    pytest.param(b"not arrow at all", ARROW, (400, "bad_request"), id="not-arrow"),
    pytest.param(b"ts,machine\n1,m1\n", "text/csv", (415, "unsupported_media_type"), id="csv"),
    # Records that are objects but not records.
    pytest.param(_envelope({"machine": "m1"}), JSON, (400, "invalid_input"), id="missing-ts"),
    pytest.param(_envelope({"ts": None}), JSON, (400, "invalid_input"), id="null-ts"),
    pytest.param(_envelope({"ts": "yesterday"}), JSON, (400, "invalid_input"), id="text-ts"),
    pytest.param(_envelope({"ts": True}), JSON, (400, "invalid_input"), id="boolean-ts"),
    pytest.param(b'{"records": [{"ts": NaN}]}', JSON, (400, "invalid_input"), id="nan-ts"),
    pytest.param(b'{"records": [{"ts": Infinity}]}', JSON, (400, "invalid_input"), id="inf-ts"),
    pytest.param(b'{"records": [{"ts": 1e400}]}', JSON, (400, "invalid_input"), id="overflow-ts"),
    pytest.param(_envelope({"ts": 1e20}), JSON, (400, "invalid_input"), id="ts-beyond-dates"),
    pytest.param(encode_msgpack([{"ts": NAN}]), MSGPACK, (400, "invalid_input"), id="msgpack-nan"),
    pytest.param(encode_arrow([{"ts": NAN}]), ARROW, (400, "invalid_input"), id="arrow-nan-ts"),
    pytest.param(
        _envelope({"ts": 1.0, "pos": {"x": 1}}), JSON, (400, "invalid_input"), id="nested"
    ),
    pytest.param(_envelope({"ts": 1.0, "xs": [1, 2]}), JSON, (400, "invalid_input"), id="list"),
    pytest.param(_envelope({"ts": 1.0, "record_id": "a"}), JSON, (400, "invalid_input"), id="rsvd"),
    pytest.param(_envelope({"ts": 1.0, "": 1}), JSON, (400, "invalid_input"), id="empty-name"),
    pytest.param(
        encode_msgpack([{"ts": 1.0, "blob": b"\x00\x01"}]),
        MSGPACK,
        (400, "invalid_input"),
        id="msgpack-bytes-field",
    ),
    # One bad record refuses its whole batch: the good records in it are not half stored.
    pytest.param(
        _envelope(*[{"ts": BASE_TS - 1000 - i, "machine": "m1"} for i in range(20)], {"x": 1}),
        JSON,
        (400, "invalid_input"),
        id="last-of-21-bad",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "expected"), MALFORMED)
def test_a_malformed_request_is_refused_and_nothing_is_lost(
    edge: Edge, body: bytes, content_type: str, expected: tuple[int, str]
) -> None:
    edge.refuse("malformed", body, content_type, expected)


INVALID_UTF8 = [
    pytest.param(
        b'{"records": [{"ts": 1.0, "machine": "caf\xe9"}]}',
        JSON,
        "malformed_json",
        id="json-latin1",
    ),
    pytest.param(b'\xff\xfe{"records": []}', JSON, "malformed_json", id="json-utf16-bom"),
    pytest.param(
        b'{"records": [{"ts": 1.0, "machine": "\\ud800"}]}', JSON, "malformed_json", id="surrogate"
    ),
    pytest.param(
        b"\x81\xa7records\x91\x82\xa2ts\xcb" + b"\x00" * 8 + b"\xa7machine\xa2\xff\xfe",
        MSGPACK,
        "bad_request",
        id="msgpack",
    ),
    pytest.param(_arrow_with_invalid_utf8(), ARROW, "bad_request", id="arrow"),
]


@pytest.mark.parametrize(("body", "content_type", "code"), INVALID_UTF8)
def test_invalid_utf8_is_refused_as_malformed(
    edge: Edge, body: bytes, content_type: str, code: str
) -> None:
    edge.refuse("utf8", body, content_type, (400, code))


WRONG_TYPES = [
    # Declared (HYBRIDAI_EDGE_STREAM_SCHEMAS): typed, "machine" required, closed.
    ("declared", {"value": "hot"}, "'value' must be a number"),
    ("declared", {"value": True}, "'value' must be a number"),
    ("declared", {"count": 1.5}, "'count' must be an integer"),
    ("declared", {"ok": 1}, "'ok' must be a boolean"),
    ("declared", {"machine": 7}, "'machine' must be a string"),
    ("declared", {"machine": None}, "missing required field 'machine'"),
    ("declared", {"extra": 1.0}, "unknown field 'extra'"),
    # Inferred from the stream's first batch (written by the case itself, before the bad one).
    ("inferred", {"value": "hot"}, "'value' must be a number"),
    ("inferred", {"ok": "yes"}, "'ok' must be a boolean"),
    ("inferred", {"machine": 7}, "'machine' must be a string"),
    ("inferred", {"count": False}, "'count' must be a number"),
]


@pytest.mark.parametrize(("stream", "change", "why"), WRONG_TYPES)
@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_a_record_of_the_wrong_type_is_refused_with_the_reason(
    edge: Edge, stream: str, change: Record, why: str, content_type: str
) -> None:
    good, bad = edge.new_records(2)
    records = [good, {**bad, **change}]
    body = _envelope(*records) if content_type == JSON else encode_msgpack(records)
    message = edge.refuse(stream, body, content_type, (400, "schema_mismatch"))
    assert "record 1" in message and why in message, message


def test_a_body_over_the_limit_gets_413_and_one_under_it_is_stored(edge: Edge) -> None:
    big = edge.new_records(LIMIT // 40)
    body = _envelope(*big)
    assert len(body) > 1.5 * LIMIT
    message = edge.refuse("huge", body, JSON, (413, "payload_too_large"))
    assert str(LIMIT) in message and "split" in message, message
    edge.refuse("huge", encode_msgpack(big), MSGPACK, (413, "payload_too_large"))

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    edge.refuse("huge", streamed(), JSON, (413, "payload_too_large"))
    # The limit is on the body, not on the batch: as many records under it are taken.
    fits = big[: len(big) * LIMIT // len(body) * 9 // 10]
    assert LIMIT * 0.8 < len(_envelope(*fits)) < LIMIT
    assert edge.write("huge", fits) == {"stream": "huge", "accepted": len(fits), "duplicates": 0}


def test_the_same_batch_sent_twice_is_stored_once(edge: Edge) -> None:
    records = edge.new_records(50)
    assert edge.write("dupes", records) == {"stream": "dupes", "accepted": 50, "duplicates": 0}
    # The producer resends (it missed our answer), in any format: counted, not stored again.
    assert edge.write("dupes", records) == {"stream": "dupes", "accepted": 0, "duplicates": 50}
    for body, content_type in ((encode_msgpack(records), MSGPACK), (encode_arrow(records), ARROW)):
        response = edge.post("dupes", body, content_type)
        assert response.json() == {"stream": "dupes", "accepted": 0, "duplicates": 50}
    # A batch that is half repeat stores the new half.
    mixed = records[:25] + edge.new_records(25)
    assert edge.write("dupes", mixed) == {"stream": "dupes", "accepted": 25, "duplicates": 25}
    assert edge.stats("dupes") == {"records_ingested": 75, "records_deduplicated": 175}


# -- the cloud's sync door ---------------------------------------------------------------------

PROBE = "sync_probe"  # a stream of its own: the edge's own batches never touch it


def _parquet(first: int, n: int, site: str = SITE) -> bytes:
    ts = [BASE_TS + 10_000_000 + first + i for i in range(n)]
    table = pa.table(
        {
            sync.RECORD_ID: [f"{DEVICE}:probe-{first + i}" for i in range(n)],
            sync.DEVICE_ID: [DEVICE] * n,
            sync.SITE: [site] * n,
            sync.TIMESTAMP: pa.array(ts, type=pa.float64()),
            sync.DATE: [datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d") for t in ts],
            "value": [float(i) for i in range(n)],
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@pytest.fixture(scope="module")
def device_api(fleet: LocalFleet) -> Iterator[httpx.Client]:
    """The cloud as the edge device itself calls it: mTLS with the device's certificate."""
    tls = fleet.workspace / DEVICE / "tls"
    context = client_context(fleet.ca_file, tls / "device.crt", tls / "device.key")
    with cloud_client(fleet, verify=context) as client:
        yield client


def _put(api: httpx.Client, seq: int, body: bytes, sha: str | None) -> httpx.Response:
    headers = {sync.STREAM_HEADER: PROBE, "Content-Type": sync.PARQUET_MEDIA_TYPE}
    if sha is not None:
        headers[sync.SHA256_HEADER] = sha
    return api.put(f"/api/v1/devices/{DEVICE}/batches/{seq}", content=body, headers=headers)


def _probe_rows(fleet: LocalFleet) -> int | None:
    """Rows of the probe stream in the lake; None while it does not exist."""
    if PROBE not in fleet.call("GET", "/api/v1/lake/tables"):
        return None
    return fleet.lake_count(f"SELECT count(*) FROM {PROBE}")


def test_a_sync_batch_with_a_wrong_sha256_is_refused_and_the_right_one_lands_once(
    fleet: LocalFleet, device_api: httpx.Client
) -> None:
    first, second = _parquet(0, 10), _parquet(10, 7)
    damaged = first[:100] + bytes([first[100] ^ 0xFF]) + first[101:]

    refusals = [
        (first, _sha(b"some other batch"), (400, "digest_mismatch")),  # wrong checksum
        (damaged, _sha(first), (400, "digest_mismatch")),  # body damaged in transit
        (first, None, (400, "bad_request")),  # no checksum at all
    ]
    for body, sha, expected in refusals:
        response = _put(device_api, 1, body, sha)
        assert error_of(response) == expected, response.text
        assert _probe_rows(fleet) is None, "a refused batch was committed"
    assert "resend the same batch" in _put(device_api, 1, first, "0" * 64).json()["error"]

    ack = _put(device_api, 1, first, _sha(first))
    assert ack.status_code == 200, ack.text
    assert (ack.json()["records"], ack.json()["duplicate"]) == (10, False)
    again = _put(device_api, 1, first, _sha(first))  # the edge missed the ack: a repeat
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert _probe_rows(fleet) == 10

    # The next batch, refused first, then accepted; other bad batches commit nothing either.
    assert error_of(_put(device_api, 2, second, _sha(first))) == (400, "digest_mismatch")
    garbage = b"PAR1 but not really parquet"
    assert error_of(_put(device_api, 2, garbage, _sha(garbage))) == (400, "invalid_input")
    foreign = _parquet(10, 7, site="site-elsewhere")
    assert error_of(_put(device_api, 2, foreign, _sha(foreign))) == (403, "forbidden")
    assert _probe_rows(fleet) == 10
    ack = _put(device_api, 2, second, _sha(second))
    assert (ack.status_code, ack.json()["duplicate"]) == (200, False), ack.text
    assert _probe_rows(fleet) == 17
    assert fleet.lake_count(f"SELECT count(DISTINCT record_id) FROM {PROBE}") == 17


# -- last: what the edge acknowledged above reached the lake, once ----------------------------


def test_every_acknowledged_record_reaches_the_lake_exactly_once(
    fleet: LocalFleet, edge: Edge
) -> None:
    edge.write_good("malformed")  # something to check even when run on its own
    fleet.wait_drained()
    for stream, records in edge.acked.items():
        expected = sorted(r["ts"] for r in records)

        def landed(stream: str = stream, expected: list[float] = expected) -> bool:
            return fleet.lake_count(f"SELECT count(*) FROM {stream}") >= len(expected)

        wait_for(f"stream {stream} in the lake", landed, 30)
        rows = fleet.call(
            "POST", "/api/v1/lake/query", json={"sql": f"SELECT ts FROM {stream}", "limit": 100_000}
        )["rows"]
        assert sorted(ts for (ts,) in rows) == expected, f"stream {stream}: lake != acknowledged"
