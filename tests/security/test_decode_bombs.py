"""Decompression and expansion bombs (issue 11.1): small bodies that decode to gigabytes.

Each bomb is built here and sent to a real process: a Parquet sync batch to the cloud, an Arrow
IPC ingest body and a JSON v2 inference body to the edge (and the cloud), an offline bundle to
``hybridai edge run``. Each is refused with 413 ``payload_too_large`` (or a clear refusal to
start), the process's peak RSS stays within ``BUDGET`` of its idle RSS, and it still serves.
Figures are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as paho
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _hostile import BUDGET, DEVICE, SITE, Rss
from paho.mqtt.enums import CallbackAPIVersion

from _fleet import cloud_client, error_of
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port
from hybridai.edge.ingest.formats import ARROW
from hybridai.link.tls import client_context
from hybridai.protocol import sync

pytestmark = pytest.mark.slow
MiB = 2**20


def _within_budget(what: str, rss: Rss, send: Callable[[], httpx.Response]) -> httpx.Response:
    """Send one request; assert the process's peak RSS stayed within the budget over idle."""
    idle = rss.reset_peak()
    response = send()
    over = rss.peak() - idle
    print(
        f"\n{what}: HTTP {response.status_code}, idle {idle / MiB:.0f} MiB, peak +{over / MiB:.0f} MiB"
    )
    assert over <= BUDGET, (
        f"{what} raised RSS by {over / MiB:.0f} MiB over idle {idle / MiB:.0f} MiB"
    )
    return response


# -- Parquet sync batches to the cloud -----------------------------------------------------------

PROBE = "bomb_probe"


def _lake_columns(n: int) -> dict[str, pa.Array]:
    ts = time.time() - 86400
    day = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")
    return {
        sync.RECORD_ID: pa.array([f"{DEVICE}:bomb-{i}" for i in range(n)]),
        sync.DEVICE_ID: pa.array([DEVICE] * n),
        sync.SITE: pa.array([SITE] * n),
        sync.TIMESTAMP: pa.array([ts + i for i in range(n)], type=pa.float64()),
        sync.DATE: pa.array([day] * n),
    }


def _row_bomb() -> bytes:
    """100M rows of one constant float: ~0.5 MB of Parquet, 800 MB decoded."""
    part = pa.table({"value": pa.array(np.zeros(1_000_000))})
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, part.schema, compression="zstd") as writer:
        for _ in range(100):
            writer.write_table(part)
    return sink.getvalue()


def _text_bomb() -> bytes:
    """100k rows (well under the row limit) of one 6 kB string: dictionary-encoded, 600 MB."""
    rows = 100_000
    text = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["x" * 6000])
    )
    table = pa.table({"note": text, "value": pa.array(np.zeros(rows))})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


@pytest.fixture(scope="module")
def device_api(fleet: LocalFleet) -> Iterator[httpx.Client]:
    """The cloud as the edge device calls it: mTLS with the device's certificate."""
    tls = fleet.workspace / DEVICE / "tls"
    context = client_context(fleet.ca_file, tls / "device.crt", tls / "device.key")
    with cloud_client(fleet, verify=context) as client:
        client.timeout = httpx.Timeout(120)
        yield client


def _put(api: httpx.Client, seq: int, body: bytes) -> httpx.Response:
    headers = {
        sync.STREAM_HEADER: PROBE,
        sync.SHA256_HEADER: hashlib.sha256(body).hexdigest(),
        "Content-Type": sync.PARQUET_MEDIA_TYPE,
    }
    return api.put(f"/api/v1/devices/{DEVICE}/batches/{seq}", content=body, headers=headers)


@pytest.mark.parametrize("bomb", [_row_bomb, _text_bomb], ids=["rows", "text"])
def test_a_parquet_bomb_is_refused_before_it_decodes(
    fleet: LocalFleet, device_api: httpx.Client, bomb: Callable[[], bytes]
) -> None:
    assert fleet.cloud is not None
    body = bomb()
    assert len(body) < 1 * MiB
    response = _within_budget(
        f"parquet {bomb.__name__} ({len(body)} B) to the cloud",
        Rss(fleet.cloud.process.pid),
        lambda: _put(device_api, 1, body),
    )
    assert error_of(response) == (413, "payload_too_large"), response.text
    assert "smaller batches" in response.json()["error"]
    # The cloud still takes a good batch (seq 1 was refused, so it is still free).
    good = io.BytesIO()
    pq.write_table(pa.table({**_lake_columns(3), "value": [1.0, 2.0, 3.0]}), good)
    ack = _put(device_api, 1, good.getvalue())
    assert ack.status_code in (200, 202) and ack.json()["records"] == 3, ack.text


# -- Arrow IPC ingest bodies to the edge ---------------------------------------------------------


def _arrow_stream(table: pa.Table, batches: int, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        for _ in range(batches):
            writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


ARROW_BOMBS = [
    # 16 zstd batches of 4M zero floats: ~20 kB that decompress to 512 MB.
    pytest.param(
        lambda: _arrow_stream(pa.table({"ts": pa.array(np.zeros(4_000_000))}), 16, "zstd"),
        id="compressed-buffers",
    ),
    # A column of nulls has no buffers at all: 50M rows in a few hundred bytes.
    pytest.param(
        lambda: _arrow_stream(pa.table({"ts": pa.nulls(50_000_000)}), 1, None),
        id="rows-without-buffers",
    ),
]


@pytest.mark.parametrize("bomb", ARROW_BOMBS)
def test_an_arrow_bomb_is_refused_before_it_decompresses(
    fleet: LocalFleet, bomb: Callable[[], bytes]
) -> None:
    edge = fleet.edges[DEVICE]
    body = bomb()
    assert len(body) < 70_000
    response = _within_budget(
        f"arrow ({len(body)} B) to the edge",
        Rss(edge.process.pid),
        lambda: httpx.post(
            f"{edge.url}/api/v1/streams/bombs/records",
            content=body,
            headers={"Content-Type": ARROW},
            timeout=120,
        ),
    )
    assert error_of(response) == (413, "payload_too_large"), response.text
    assert "smaller batches" in response.json()["error"]
    good = httpx.post(
        f"{edge.url}/api/v1/streams/bombs/records", json={"records": [{"ts": 1.0}]}, timeout=60
    )
    assert good.status_code == 200, good.text


def _empty_records_json() -> bytes:
    """Just under 8 MiB of ``{}`` records: 2.8M dicts once parsed (~200 MB)."""
    count = (8 * MiB - 64) // 3
    return b'{"records":[' + b",".join([b"{}"] * count) + b"]}"


def _empty_records_msgpack() -> bytes:
    """3M empty maps in 3 MB of MessagePack."""
    count = 3_000_000
    return b"\x81\xa7records\xdd" + struct.pack(">I", count) + b"\x80" * count


@pytest.mark.parametrize(
    ("bomb", "content_type"),
    [
        pytest.param(_empty_records_json, "application/json", id="json"),
        pytest.param(_empty_records_msgpack, "application/msgpack", id="msgpack"),
    ],
)
def test_a_body_of_countless_tiny_records_is_refused_before_they_are_built(
    fleet: LocalFleet, bomb: Callable[[], bytes], content_type: str
) -> None:
    edge = fleet.edges[DEVICE]
    body = bomb()
    response = _within_budget(
        f"{content_type} of {len(body)} B to the edge",
        Rss(edge.process.pid),
        lambda: httpx.post(
            f"{edge.url}/api/v1/streams/bombs/records",
            content=body,
            headers={"Content-Type": content_type},
            timeout=120,
        ),
    )
    assert error_of(response) == (413, "payload_too_large"), response.text
    assert "more than 1000000 records" in response.json()["error"]


def test_the_largest_body_the_limits_let_through_stays_within_budget(fleet: LocalFleet) -> None:
    """The limits are set so that a legitimate body just under them keeps the rule too."""
    edge = fleet.edges[DEVICE]
    base = float(int(time.time()) - 7 * 86400)  # whole seconds: every record's text is as long
    one = {"machine": "line-3-m07", "vibration": 1.234, "temperature": 61.5023, "rpm": 1500.5}
    count = 8 * MiB // (len(json.dumps({"ts": base, **one})) + 2)
    records = [{"ts": base + i, **one} for i in range(count)]
    body = json.dumps({"records": records}).encode()
    del records
    assert 7 * MiB < len(body) < 8 * MiB
    response = _within_budget(
        f"ingest of {count} records ({len(body)} B) to the edge",
        Rss(edge.process.pid),
        lambda: httpx.post(
            f"{edge.url}/api/v1/streams/legit/records",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=300,
        ),
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == count
    # v2: nested rows are the costliest JSON per byte; just under the 2 MiB limit.
    rows = (2 * MiB - 200) // 4
    tensor = {"name": "input", "shape": [rows, 1], "datatype": "INT64", "data": "DATA"}
    request = {"inputs": [tensor], "parameters": {"placement": "edge"}}  # answered here
    v2 = json.dumps(request).replace('"DATA"', "[" + ",".join(["[0]"] * rows) + "]")
    response = _within_budget(
        f"v2 JSON of {len(v2)} B (nested rows) to the edge",
        Rss(edge.process.pid),
        lambda: httpx.post(f"{edge.url}/v2/models/pm/infer", content=v2, timeout=300),
    )
    # No model here takes it (the edge has none): a clear refusal, never a crash.
    status, code = error_of(response)
    assert code != "internal" and 400 <= status < 600 and status != 500, response.text


# -- MQTT messages to the edge --------------------------------------------------------------------

BROKER = ("127.0.0.1", 1883)


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


def test_an_mqtt_message_of_countless_tiny_records_is_dead_lettered_unparsed(
    fleet: LocalFleet,
) -> None:
    if not _broker_up():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Mosquitto is not running at 127.0.0.1:1883 (CI=true: start it)")
        pytest.skip("no MQTT broker at 127.0.0.1:1883")
    prefix = f"sec{uuid.uuid4().hex[:10]}"
    env = {
        "HYBRIDAI_EDGE_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "HYBRIDAI_EDGE_MQTT_TOPICS": json.dumps({f"{prefix}/#": "mqtt_bombs"}),
        "HYBRIDAI_EDGE_MQTT_CLIENT_ID": f"hybridai-{prefix}",
    }
    edge = fleet.start_edge(f"{DEVICE}-mq", SITE, env=env)
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect(*BROKER)
    publisher.loop_start()

    def mqtt() -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{edge.url}/api/v1/status", timeout=30).json()["mqtt"]
        return found

    def publish(payload: bytes) -> None:
        info = publisher.publish(f"{prefix}/x", payload, qos=1)
        info.wait_for_publish(timeout=60)
        assert info.is_published()

    try:
        sent = iter(range(1, 1000))
        wait_for(
            "the edge to subscribe",
            lambda: (
                publish(json.dumps({"ts": float(next(sent))}).encode()) is None
                and mqtt()["records_stored"] > 0
            ),
            60,
        )
        stored = mqtt()["records_stored"]
        rss = Rss(edge.process.pid)
        idle = rss.reset_peak()
        publish(_empty_records_json()[len(b'{"records":') : -1])  # the array: 2.8M records
        wait_for("the bomb to be dead-lettered", lambda: mqtt()["messages_dead_lettered"] > 0, 120)
        over = rss.peak() - idle
        print(
            f"\nMQTT 8 MiB of {{}} records to the edge: idle {idle / MiB:.0f} MiB, +{over / MiB:.0f} MiB"
        )
        reasons = {k: n for k, n in mqtt()["dead_lettered_by_reason"].items() if n}
        assert reasons == {"malformed": 1}, mqtt()
        assert over <= BUDGET, f"the message raised RSS by {over / MiB:.0f} MiB"
        publish(json.dumps({"ts": 5000.0}).encode())
        wait_for("a good message after it", lambda: mqtt()["records_stored"] > stored, 60)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


# -- JSON v2 inference bodies --------------------------------------------------------------------


def _big_v2_body(megabytes: int) -> bytes:
    """A valid v2 request of about ``megabytes`` MiB: rows of 4 FP32 features, as JSON."""
    row = "[1.25,60.5,5.25,1500.5]"
    rows = megabytes * MiB // (len(row) + 1)
    tensor = {"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": "DATA"}
    text = json.dumps({"inputs": [tensor]})
    return text.replace('"DATA"', "[" + ",".join([row] * rows) + "]").encode()


def test_a_large_json_v2_body_is_refused_at_edge_and_cloud(fleet: LocalFleet) -> None:
    assert fleet.cloud is not None and fleet.api is not None
    body = _big_v2_body(23)
    assert 22 * MiB < len(body) < 24 * MiB
    edge = fleet.edges[DEVICE]
    headers = {"Content-Type": "application/json"}
    api = fleet.api

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), MiB):
            yield body[start : start + MiB]

    sends: list[tuple[str, Rss, Callable[[], httpx.Response]]] = [
        (
            "v2 JSON 23 MiB to the edge",
            Rss(edge.process.pid),
            lambda: httpx.post(
                f"{edge.url}/v2/models/pm/infer", content=body, headers=headers, timeout=120
            ),
        ),
        (
            "v2 JSON 23 MiB, chunked, to the edge",
            Rss(edge.process.pid),
            lambda: httpx.post(
                f"{edge.url}/v2/models/pm/infer", content=chunks(), headers=headers, timeout=120
            ),
        ),
        (
            "v2 JSON 23 MiB to the cloud",
            Rss(fleet.cloud.process.pid),
            lambda: api.post("/v2/models/pm/infer", content=body, headers=headers, timeout=120),
        ),
    ]
    for what, rss, send in sends:
        response = _within_budget(what, rss, send)
        assert error_of(response) == (413, "payload_too_large"), f"{what}: {response.text}"
        assert "at most" in response.json()["error"]
    assert httpx.get(f"{edge.url}/v2/health/live", timeout=30).status_code == 200
    assert api.get("/v2/health/live").status_code == 200


# -- offline bundles -----------------------------------------------------------------------------


def _sparse_member(name: str, real_size: int) -> bytes:
    """A GNU sparse tar header ('S') with no data: tarfile reads it as ``real_size`` zeros."""
    header = bytearray(512)

    def put(offset: int, width: int, value: bytes) -> None:
        header[offset : offset + len(value)] = value[:width]

    def octal(value: int, width: int) -> bytes:
        return (format(value, "o").zfill(width - 1) + "\0").encode()

    put(0, 100, name.encode())
    put(100, 8, octal(0o644, 8))
    put(108, 8, octal(0, 8))
    put(116, 8, octal(0, 8))
    put(124, 12, octal(0, 12))  # no data blocks follow
    put(136, 12, octal(0, 12))
    put(156, 1, b"S")
    put(257, 8, b"ustar  \0")
    put(483, 12, octal(real_size, 12))  # the size the member claims to have
    header[148:156] = b" " * 8
    checksum = sum(header)
    header[148:156] = format(checksum, "06o").encode() + b"\0 "
    return bytes(header)


def _sparse_bundle(path: Path, members: int, real_size: int) -> None:
    blocks = b"".join(_sparse_member(f"artifacts/m{i}.onnx", real_size) for i in range(members))
    path.write_bytes(blocks + b"\0" * 1024)


def _many_members_bundle(path: Path, members: int) -> None:
    with tarfile.open(path, "w") as archive:
        for i in range(members):
            info = tarfile.TarInfo(f"f{i}")
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))


def _edge_run_peak(workspace: Path, bundle: Path) -> tuple[int, int, str]:
    """(exit status, peak RSS in bytes, output) of ``hybridai edge run --bundle`` (no cloud)."""
    workspace.mkdir(parents=True, exist_ok=True)
    log = workspace / "edge.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hybridai",
                "edge",
                "run",
                "--cloud",
                "https://127.0.0.1:9",
                "--device-id",
                "edge-b",
                "--data-dir",
                str(workspace / "data"),
                "--port",
                str(free_port()),
                "--bundle",
                str(bundle),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HYBRIDAI_EDGE_ENROLL_TOKEN": "unused-token"},
        )
    try:
        _pid, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        process.kill()
        raise
    process.returncode = os.waitstatus_to_exitcode(status)
    text = " ".join(log.read_text(errors="replace").split())
    return process.returncode, usage.ru_maxrss * 1024, text


@pytest.mark.parametrize(
    ("make", "why"),
    [
        pytest.param(lambda p: _sparse_bundle(p, 3, 300 * MiB), "not a plain file", id="sparse"),
        pytest.param(lambda p: _many_members_bundle(p, 5000), "more than 64 entries", id="many"),
    ],
)
def test_a_bundle_bomb_is_refused_before_it_is_read(
    tmp_path: Path, make: Callable[[Path], None], why: str
) -> None:
    baseline_bundle = tmp_path / "empty.tar"
    with tarfile.open(baseline_bundle, "w"):
        pass
    base_status, base_peak, base_text = _edge_run_peak(tmp_path / "baseline", baseline_bundle)
    assert base_status != 0 and "manifest" in base_text, base_text

    bomb = tmp_path / "bomb.tar"
    make(bomb)
    status, peak, text = _edge_run_peak(tmp_path / "bomb", bomb)
    over = peak - base_peak
    print(
        f"\nbundle bomb ({bomb.stat().st_size} B): exit {status}, peak {peak / MiB:.0f} MiB, "
        f"+{over / MiB:.0f} MiB over a refused empty bundle"
    )
    assert status != 0, text
    assert why in text, text
    assert over <= BUDGET, f"reading the bundle took {over / MiB:.0f} MiB"
