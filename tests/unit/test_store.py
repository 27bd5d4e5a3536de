from __future__ import annotations

import base64
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from hybridai.edge.store.edge_store import EdgeStore, InvalidRecord

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with EdgeStore(tmp_path / "edge.db") as s:
        yield s


def rows(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [{"ts": T0 + i, "temp": 20.0 + i, **extra} for i in range(start, start + n)]


def test_store_uses_wal_and_full_sync(store: EdgeStore) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_append_accepts_and_counts(store: EdgeStore) -> None:
    result = store.append("telemetry", rows(3))

    assert (result.accepted, result.duplicates) == (3, 0)
    stats = store.stats(now=T0 + 10)
    assert stats.records_ingested == 3
    assert stats.backlog_records == 3
    assert stats.oldest_unsynced_age_s == pytest.approx(10.0)


def test_duplicates_are_detected_across_calls_and_within_one(store: EdgeStore) -> None:
    store.append("telemetry", rows(2))

    again = store.append("telemetry", [*rows(3), {"temp": 20.0, "ts": int(T0)}])

    assert (again.accepted, again.duplicates) == (1, 3)  # key order and int ts don't matter
    assert store.stats().records_deduplicated == 3
    assert store.stats().backlog_records == 3


def test_same_content_in_another_stream_is_not_a_duplicate(store: EdgeStore) -> None:
    store.append("telemetry", rows(2))

    result = store.append("alerts", rows(2))

    assert (result.accepted, result.duplicates) == (2, 0)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("not a dict", "JSON object"),
        ({"temp": 1.0}, "missing 'ts'"),
        ({"ts": "yesterday"}, "'ts' must be a finite number"),
        ({"ts": True}, "'ts' must be a finite number"),
        ({"ts": float("nan")}, "'ts' must be a finite number"),
        ({"ts": 1e300}, "out of range"),
        ({"ts": T0, "temp": {"c": 1}}, "nested"),
        ({"ts": T0, "tags": [1, 2]}, "nested"),
        ({"ts": T0, "site": "x"}, "reserved"),
        ({"ts": T0, "record_id": "x"}, "reserved"),
        ({"ts": T0, "device_id": "x"}, "reserved"),
        ({"ts": T0, "date": "x"}, "reserved"),
        ({"ts": T0, "raw": b"bytes"}, "unsupported type"),
        ({"ts": T0, 3: "x"}, "non-empty strings"),
        ({"ts": T0, "": "x"}, "non-empty strings"),
        ({"ts": T0, "name": "\ud800"}, "not valid Unicode"),
    ],
)
def test_invalid_record_rejects_the_whole_call(store: EdgeStore, record: Any, problem: str) -> None:
    with pytest.raises(InvalidRecord, match=rf"record 2: .*{problem}"):
        store.append("telemetry", [*rows(2), record])

    stats = store.stats()
    assert stats.records_ingested == 0
    assert stats.backlog_records == 0
    assert store.next_batch() is None


def test_invalid_stream_name_is_refused(store: EdgeStore) -> None:
    with pytest.raises(ValueError, match="stream name"):
        store.append("Bad Stream!", rows(1))


def test_empty_append_is_a_no_op(store: EdgeStore) -> None:
    assert store.append("telemetry", []).accepted == 0
    assert store.next_batch() is None


def test_next_batch_returns_the_pending_batch_until_acknowledged(store: EdgeStore) -> None:
    store.append("telemetry", rows(5))
    first = store.next_batch(max_records=3)
    assert first is not None

    store.append("telemetry", rows(2, start=10))
    again = store.next_batch(max_records=100)

    assert again == first
    assert first.seq == 1
    assert [r.payload["temp"] for r in first.records] == [20.0, 21.0, 22.0]
    assert first.records[0].ts == T0
    assert "ts" not in first.records[0].payload


def test_batches_follow_in_sequence_and_cover_everything_once(store: EdgeStore) -> None:
    store.append("telemetry", rows(7))
    seen: list[int] = []
    seqs: list[int] = []

    while (batch := store.next_batch(max_records=3)) is not None:
        seqs.append(batch.seq)
        seen += [r.local_id for r in batch.records]
        store.mark_synced(batch.seq, wire_bytes=100)

    assert seqs == [1, 2, 3]
    assert seen == sorted(seen) and len(set(seen)) == 7
    stats = store.stats()
    assert (stats.records_synced, stats.batches_synced, stats.bytes_synced) == (7, 3, 300)
    assert stats.backlog_records == 0
    assert stats.oldest_unsynced_age_s is None


def test_max_bytes_limits_a_batch_but_never_below_one_record(store: EdgeStore) -> None:
    records = rows(4)
    for i, record in enumerate(records):  # 1000 bytes each that compression cannot shrink
        record["note"] = base64.b64encode(random.Random(i).randbytes(750)).decode()
    store.append("telemetry", records)

    batch = store.next_batch(max_bytes=10)

    assert batch is not None and len(batch.records) == 1
    store.mark_synced(batch.seq, 1)
    batch = store.next_batch(max_bytes=2500)
    assert batch is not None and len(batch.records) == 2


def test_within_a_priority_the_oldest_stream_goes_first(store: EdgeStore) -> None:
    store.append("vibration", rows(2))
    store.append("predictions", rows(2, start=100))
    store.append("vibration", rows(2, start=200))

    order = []
    while (batch := store.next_batch()) is not None:
        order.append((batch.stream, len(batch.records)))
        store.mark_synced(batch.seq, 1)

    assert order == [("vibration", 4), ("predictions", 2)]


def test_mark_synced_is_idempotent_and_refuses_unknown_batches(store: EdgeStore) -> None:
    store.append("telemetry", rows(2))
    batch = store.next_batch()
    assert batch is not None

    store.mark_synced(batch.seq, 50)
    store.mark_synced(batch.seq, 50)

    stats = store.stats()
    assert (stats.records_synced, stats.batches_synced, stats.bytes_synced) == (2, 1, 50)
    with pytest.raises(ValueError, match="no batch 99"):
        store.mark_synced(99, 1)


def test_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with EdgeStore(path) as store:
        store.append("telemetry", rows(5))
        store.append("telemetry", rows(1))
        batch = store.next_batch(max_records=2)
        assert batch is not None
        store.mark_synced(batch.seq, 123)
        pending = store.next_batch(max_records=2)
        store.set_meta("credential", "secret")

    with EdgeStore(path) as store:
        stats = store.stats(now=T0 + 100)
        assert store.next_batch(max_records=99) == pending
        assert store.get_meta("credential") == "secret"
        assert store.get_meta("missing") is None
        assert pending is not None
        store.mark_synced(pending.seq, 1)
        nxt = store.next_batch()

    assert stats.records_ingested == 5
    assert stats.records_deduplicated == 1
    assert stats.records_synced == 2
    assert stats.batches_synced == 1
    assert stats.bytes_synced == 123
    assert stats.backlog_records == 3
    assert stats.oldest_unsynced_age_s == pytest.approx(98.0)
    assert nxt is not None and nxt.seq == 3


def test_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with EdgeStore(path) as store:
        store.append("telemetry", rows(1))
        batch = store.next_batch()
        assert batch is not None
        store.mark_synced(batch.seq, 1)
        store._conn.execute("DELETE FROM batches")  # as retention might one day

    with EdgeStore(path) as store:
        store.append("telemetry", rows(1, start=5))
        batch = store.next_batch()

    assert batch is not None and batch.seq == 2


def test_set_meta_overwrites(store: EdgeStore) -> None:
    store.set_meta("k", "1")
    store.set_meta("k", "2")

    assert store.get_meta("k") == "2"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()

    with pytest.raises(RuntimeError, match="upgrade the agent"):
        EdgeStore(path)


def test_concurrent_appends_from_threads(store: EdgeStore) -> None:
    def worker(k: int) -> None:
        for i in range(20):
            store.append("telemetry", [{"ts": T0 + i, "worker": k}])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert store.stats().records_ingested == 80
