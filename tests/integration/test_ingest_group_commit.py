"""A real edge process killed while concurrent producers stream into it (group commit).

Concurrent requests share one transaction and one fsync; each is answered only after it. So
after ``kill -9``, every batch the edge acknowledged is in its store, none twice, and a
producer that resends everything it is unsure of ends with each record stored exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hybridai.demo.fleet import wait_for
from hybridai.demo.launcher import free_port
from hybridai.edge.ingest.intake import Ingest
from hybridai.edge.store.edge_store import EdgeStore

PRODUCERS = 6
RECORDS_PER_BATCH = 250
PATH = "/api/v1/streams/plant/records"
# The edge's app and agent as its own process, unenrolled (no cloud: ingest never waits for it).
EDGE = """
import sys
from pathlib import Path
from hybridai.edge.agent import EdgeAgent
from hybridai.edge.app import create_app
from hybridai.edge.settings import EdgeSettings
from hybridai.link.transport import serve

port = int(sys.argv[2])
settings = EdgeSettings(data_dir=Path(sys.argv[1]), device_id="gw-1", port=port,
                        peer_port=int(sys.argv[3]), cloud_url="https://127.0.0.1:9",
                        lan_auth="open")  # credentials are tested elsewhere
serve(create_app(EdgeAgent(settings)), "127.0.0.1", port)
"""


def _start_edge(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", EDGE, str(data_dir), str(port), str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def live() -> bool:
        try:
            return httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the edge to listen", live, 60)
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    return process, url


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    data_dir = tmp_path / "edge"
    process, url = _start_edge(data_dir)
    yield process, url, data_dir
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _batch(producer: int, seq: int) -> list[dict[str, Any]]:
    base = (producer * 10_000 + seq) * RECORDS_PER_BATCH
    return [
        {"ts": 1_700_000_000.0 + base + i, "producer": producer, "n": base + i, "v": 0.5 * i}
        for i in range(RECORDS_PER_BATCH)
    ]


def test_a_killed_edge_loses_no_acknowledged_record_and_duplicates_none(
    edge: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, url, data_dir = edge
    sent: list[list[dict[str, Any]]] = []
    acked: list[list[dict[str, Any]]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce(producer: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            for seq in range(100_000):
                records = _batch(producer, seq)
                with lock:
                    sent.append(records)
                try:
                    response = http.post(PATH, json={"records": records})
                except httpx.TransportError:
                    return  # the edge died mid-request: this batch is unsure
                assert response.status_code == 200, response.text
                assert response.json()["accepted"] == RECORDS_PER_BATCH
                with lock:
                    acked.append(records)
                if stop.is_set():
                    return

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for t in threads:
        t.start()
    wait_for("acknowledged batches", lambda: len(acked) >= 40, 60, every_s=0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    stop.set()
    for t in threads:
        t.join(15)

    with EdgeStore(data_dir / "store.db") as store:
        pending = store.next_batch(max_records=10_000_000)
        assert pending is not None
        stored = Counter(int(r.payload["n"]) for r in pending.records)
        assert not [n for n, times in stored.items() if times > 1], "a record stored twice"
        for records in acked:
            assert all(r["n"] in stored for r in records), "an acknowledged record was lost"
        for records in sent:  # a batch is stored all or nothing, acknowledged or not
            assert sum(r["n"] in stored for r in records) in (0, RECORDS_PER_BATCH)
        # The producers resend everything they sent: the store ends with each record once.
        ingest = Ingest(store, {})
        resent = sum(ingest.write("plant", records).accepted for records in sent)
        assert resent == len(sent) * RECORDS_PER_BATCH - len(stored)
        assert store.stats().records_ingested == len(sent) * RECORDS_PER_BATCH
