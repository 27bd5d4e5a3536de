"""Edge store encryption at rest, plus the store's policy hooks (local-only, retention)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hybridai.edge.store.crypto import StoreKeyError, generate_key_text, load_store_key, parse_key
from hybridai.edge.store.edge_store import EdgeStore

KEY = bytes.fromhex(generate_key_text())
SECRET = "PLAINTEXT-MARKER-93f1"


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"ts": 1_700_000_000.0 + i, "note": f"{SECRET}-{i}", "v": i} for i in range(start, n)]


def file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_encrypted_store_holds_no_plaintext_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with EdgeStore(path, key=KEY) as store:
        assert store.append("telemetry", rows(20)).accepted == 20
        batch = store.next_batch()
        assert batch is not None
        assert [r.payload["note"] for r in batch.records] == [f"{SECRET}-{i}" for i in range(20)]
    assert SECRET.encode() not in file_bytes(path)
    with EdgeStore(tmp_path / "plain.db") as plain:
        plain.append("telemetry", rows(1))
    assert SECRET.encode() in file_bytes(tmp_path / "plain.db")  # the check can see it


def test_deduplication_still_works_when_encrypted(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "store.db", key=KEY) as store:
        store.append("telemetry", rows(5))
        result = store.append("telemetry", rows(7))
        assert (result.accepted, result.duplicates) == (2, 5)


def test_wrong_or_missing_key_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with EdgeStore(path, key=KEY) as store:
        store.append("telemetry", rows(1))
    with pytest.raises(StoreKeyError, match="another key"):
        EdgeStore(path, key=bytes(32))
    with pytest.raises(StoreKeyError, match="is encrypted"):
        EdgeStore(path)
    with EdgeStore(path, key=KEY) as store:  # the right key still opens it
        assert store.stats().records_ingested == 1


def test_a_plaintext_store_is_not_mixed_with_sealed_records(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with EdgeStore(path) as store:
        store.append("telemetry", rows(1))
    with pytest.raises(StoreKeyError, match="unencrypted records"):
        EdgeStore(path, key=KEY)


def test_key_sources(tmp_path: Path) -> None:
    text = generate_key_text()
    (tmp_path / "k").write_text(text + "\n")
    assert load_store_key(tmp_path / "k", None) == bytes.fromhex(text)
    assert load_store_key(None, text) == bytes.fromhex(text)
    assert load_store_key(None, None) is None
    with pytest.raises(StoreKeyError, match="64 hex"):
        parse_key("short", "test")
    with pytest.raises(StoreKeyError, match="cannot read"):
        load_store_key(tmp_path / "missing", None)


def test_local_only_streams_are_never_batched_nor_backlog(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "store.db") as store:
        store.append("secret", rows(3))
        store.append("telemetry", rows(2))
        batch = store.next_batch(skip_streams=frozenset({"secret"}))
        assert batch is not None and batch.stream == "telemetry"
        store.mark_synced(batch.seq, 10)
        assert store.next_batch(skip_streams=frozenset({"secret"})) is None
        stats = store.stats(local_only=frozenset({"secret"}))
        assert (stats.backlog_records, stats.local_only_records) == (0, 3)


def test_a_withdrawn_batch_returns_its_records_and_its_seq_is_not_reused(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "store.db") as store:
        store.append("secret", rows(3))
        first = store.next_batch()
        assert first is not None
        store.withdraw_batch(first.seq)
        assert store.next_batch(skip_streams=frozenset({"secret"})) is None
        again = store.next_batch()
        assert again is not None and again.seq > first.seq and len(again.records) == 3


def test_retention_deletes_synced_records_and_counts_unsynced_ones(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "store.db") as store:
        store.append("telemetry", rows(10))
        batch = store.next_batch(max_records=4)
        assert batch is not None
        store.mark_synced(batch.seq, 1)
        cutoff = 1_700_000_000.0 + 6  # records 0..5 are old; 0..3 synced
        assert store.expire("telemetry", cutoff) == (4, 2)
        assert store.stats().records_expired == 4
        store.append("secret", rows(10))
        assert store.expire("secret", cutoff, local_only=True) == (6, 0)


def test_a_chunk_altered_on_disk_is_refused_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with EdgeStore(path, key=KEY) as store:
        store.append("telemetry", rows(20))
    db = sqlite3.connect(path)
    (data,) = db.execute("SELECT data FROM chunks").fetchone()
    flipped = bytes([data[0], data[1] ^ 0x01, *data[2:]])
    db.execute("UPDATE chunks SET data = ?", (flipped,))
    db.commit()
    db.close()
    with EdgeStore(path, key=KEY) as store, pytest.raises(StoreKeyError, match="altered on disk"):
        store.next_batch()
