"""The edge store's sync order, batch timing, disk quota and per-stream figures."""

from __future__ import annotations

import base64
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hybridai.edge.store._sqlite import STREAM_COUNTERS
from hybridai.edge.store.config import HIGH, StoreConfigError, build_config
from hybridai.edge.store.crypto import PayloadCipher
from hybridai.edge.store.edge_store import EdgeStore

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rows(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [{"ts": T0 + i, "v": float(i), **extra} for i in range(start, start + n)]


def drain(store: EdgeStore, **kwargs: Any) -> list[tuple[str, int]]:
    order = []
    while (batch := store.next_batch(**kwargs)) is not None:
        order.append((batch.stream, len(batch.records)))
        store.mark_synced(batch.seq, 1)
    return order


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Any:
    with EdgeStore(tmp_path / "edge.db", clock=clock) as s:
        yield s


def test_highest_priority_first_then_oldest_first(store: EdgeStore) -> None:
    store.append("telemetry", rows(3))  # low
    store.append("predictions", rows(2))  # normal
    store.append("alerts", rows(1))  # high
    store.append("hard_examples", rows(1))  # high, arrived after the alert
    store.append("failures", rows(1))  # high

    order = drain(store)

    assert order == [
        ("alerts", 1),
        ("hard_examples", 1),
        ("failures", 1),
        ("predictions", 2),
        ("telemetry", 3),
    ]


def test_configured_priorities_override_the_defaults(store: EdgeStore) -> None:
    store.configure(build_config({"stream_priorities": {"telemetry": "high", "alerts": "low"}}))
    store.append("alerts", rows(1))
    store.append("telemetry", rows(1))

    assert drain(store) == [("telemetry", 1), ("alerts", 1)]
    assert store.stats().streams["alerts"].priority == "low"


def test_bad_priority_is_refused_with_the_choices() -> None:
    with pytest.raises(StoreConfigError, match="use high, normal or low"):
        build_config({"stream_priorities": {"alerts": "urgent"}})


def test_batch_waits_to_fill_but_at_most_max_wait(store: EdgeStore, clock: Clock) -> None:
    store.append("telemetry", rows(3))

    assert store.next_batch(max_wait_s=5.0) is None  # not full, not overdue
    clock.now += 4.9
    assert store.next_batch(max_wait_s=5.0) is None
    clock.now += 0.2
    batch = store.next_batch(max_wait_s=5.0)

    assert batch is not None and len(batch.records) == 3


def test_a_full_batch_goes_at_once_by_records_or_bytes(store: EdgeStore) -> None:
    store.append("telemetry", rows(10))
    by_records = store.next_batch(max_records=4, max_wait_s=60)
    assert by_records is not None and len(by_records.records) == 4
    store.mark_synced(by_records.seq, 1)

    store.append("predictions", rows(5, note="x" * 100))
    batch = store.next_batch(max_bytes=350, max_wait_s=60, skip_streams=frozenset({"telemetry"}))
    assert batch is not None and batch.stream == "predictions" and len(batch.records) == 2


def test_high_priority_never_waits_and_a_ready_low_stream_is_not_held_up(
    store: EdgeStore, clock: Clock
) -> None:
    store.append("telemetry", rows(3))
    clock.now += 10
    store.append("predictions", rows(1))  # young, not full: waits
    store.append("alerts", rows(1))

    order = drain(store, max_wait_s=5.0)

    assert order == [("alerts", 1), ("telemetry", 3)]
    clock.now += 5
    assert drain(store, max_wait_s=5.0) == [("predictions", 1)]


def test_min_priority_holds_back_lower_classes(store: EdgeStore) -> None:
    store.append("telemetry", rows(2))
    store.append("alerts", rows(1))

    assert drain(store, min_priority=HIGH) == [("alerts", 1)]
    assert store.stats().backlog_records == 2


def test_pending_low_priority_batch_is_resent_first_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with EdgeStore(path) as store:
        store.append("telemetry", rows(4))
        before = store.next_batch(max_records=2)  # cut, sent, never acknowledged (crash)
        assert before is not None

    with EdgeStore(path) as store:
        store.append("alerts", rows(1))
        again = store.next_batch()
        assert again == before  # same records, same seq: same bytes on the wire
        store.mark_synced(before.seq, 1)
        after = store.next_batch()

    assert after is not None and after.stream == "alerts" and after.seq == before.seq + 1


def sized(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Records of about 260 bytes stored: random text, which compression cannot shrink."""
    return [
        {"ts": T0 + i, "blob": base64.b64encode(random.Random(i).randbytes(220)).decode()}
        for i in range(start, start + n)
    ]


def quota_store(tmp_path: Path, quota: int) -> EdgeStore:
    store = EdgeStore(tmp_path / "edge.db")
    store.configure(build_config({"store_quota_bytes": quota}))
    return store


def test_quota_evicts_synced_low_priority_first(tmp_path: Path) -> None:
    with quota_store(tmp_path, quota=14_000) as store:
        for stream in ("telemetry", "predictions"):
            store.append(stream, sized(20))
        assert drain(store) == [("predictions", 20), ("telemetry", 20)]
        size = store.stats().bytes_stored

        store.append("alerts", sized(20))  # over the quota now
        stats = store.stats()

    tele, pred = stats.streams["telemetry"], stats.streams["predictions"]
    assert size < 14_000
    assert 0 < tele.records_evicted_synced < 20
    assert pred.records_evicted_synced == 0  # normal goes only after every synced low record
    assert stats.records_evicted_unsynced == 0
    assert stats.streams["alerts"].records_stored == 20
    assert stats.bytes_stored <= 14_000


def test_quota_then_evicts_unsynced_low_then_normal_never_high(tmp_path: Path) -> None:
    with quota_store(tmp_path, quota=17_000) as store:
        store.append("alerts", sized(30))  # ~8 KB, high
        store.append("telemetry", sized(20))
        store.append("predictions", sized(20))  # pushes over
        mid = store.stats()
        store.append("alerts", sized(40, start=100))  # now alerts alone exceed the quota
        end = store.stats()

    assert mid.streams["telemetry"].records_evicted_unsynced > 0
    assert mid.streams["predictions"].records_evicted_unsynced == 0
    assert mid.bytes_stored <= 17_000
    assert end.streams["telemetry"].records_stored == 0
    assert end.streams["predictions"].records_stored == 0
    assert end.streams["alerts"].records_stored == 70  # never evicted while unsynced
    assert end.streams["alerts"].records_evicted_unsynced == 0
    assert end.over_quota is True
    assert end.records_evicted_unsynced == 40
    assert end.records_ingested == 110


def test_quota_evicts_oldest_first_and_never_the_batch_in_flight(tmp_path: Path) -> None:
    with quota_store(tmp_path, quota=10_000) as store:
        store.append("telemetry", sized(10))
        in_flight = store.next_batch()
        assert in_flight is not None
        store.append("telemetry", sized(40, start=10))
        kept = [r.local_id for r in (store.next_batch() or in_flight).records]
        assert store.next_batch() == in_flight
        store.mark_synced(in_flight.seq, 1)
        rest = store.next_batch(max_records=1000)

    assert rest is not None
    ids = [r.local_id for r in rest.records]
    assert ids == sorted(ids) and ids[-1] == 50  # the newest survive
    assert min(ids) > 11  # the oldest unsynced went
    assert kept == [r.local_id for r in in_flight.records]


def test_lowering_the_quota_takes_effect_on_demand(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "edge.db") as store:
        store.append("telemetry", sized(30))
        store.configure(build_config({"store_quota_bytes": 2_000}))

        synced, unsynced = store.enforce_quota()

        assert (synced, unsynced) == (0, store.stats().records_evicted_unsynced)
        assert store.stats().bytes_stored <= 2_000


def test_per_stream_figures(store: EdgeStore, clock: Clock) -> None:
    store.append("telemetry", rows(5))
    store.append("telemetry", rows(2))  # duplicates
    store.append("alerts", rows(1))
    batch = store.next_batch()
    assert batch is not None
    store.mark_synced(batch.seq, 321)

    stats = store.stats(now=T0 + 100)

    tele, alerts = stats.streams["telemetry"], stats.streams["alerts"]
    assert (tele.records_ingested, tele.records_deduplicated, tele.backlog_records) == (5, 2, 5)
    assert tele.oldest_unsynced_age_s == pytest.approx(100.0)
    assert tele.priority == "low" and alerts.priority == "high"
    assert (alerts.records_synced, alerts.bytes_synced, alerts.backlog_records) == (1, 321, 0)
    assert alerts.oldest_unsynced_age_s is None
    assert stats.bytes_stored == tele.bytes_stored + alerts.bytes_stored > 0
    assert stats.backlog_records == 5


def _schema_2_store(path: Path, key: bytes | None = None) -> None:
    """A store as the agent of schema 2 left it: one row per record, a batch in flight."""
    cipher = None if key is None else PayloadCipher(key)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,
            hash BLOB NOT NULL, ts REAL NOT NULL, payload TEXT NOT NULL, batch_seq INTEGER,
            synced INTEGER NOT NULL DEFAULT 0, UNIQUE (stream, hash));
        CREATE TABLE batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,
            records INTEGER NOT NULL, created_at REAL NOT NULL,
            acked INTEGER NOT NULL DEFAULT 0, wire_bytes INTEGER);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE streams (stream TEXT PRIMARY KEY, {counters});
        INSERT INTO counters VALUES ('records_ingested', 6), ('records_synced', 2);
        INSERT INTO batches VALUES (1, 'telemetry', 2, 0, 1, 10), (2, 'telemetry', 2, 0, 0, NULL);
        PRAGMA user_version=2;
        """.replace("{counters}", ", ".join(f"{c} INTEGER DEFAULT 0" for c in STREAM_COUNTERS))
    )
    rows = [  # ids interleave two streams; 1-2 synced, 3 and 5 in batch 2, 7 tombstoned
        (1, "telemetry", 1, 1), (2, "telemetry", 1, 1), (3, "telemetry", 2, 0),
        (4, "alerts", None, 0), (5, "telemetry", 2, 0), (6, "telemetry", None, 0),
        (7, "telemetry", 0, 1),
    ]  # fmt: skip

    def payload(stream: str, i: int) -> str | bytes:
        text = json.dumps({"temp": 20.0 + i})
        return text if cipher is None else cipher.seal(stream, T0 + i, text)

    db.executemany(
        "INSERT INTO records (id, stream, hash, ts, payload, batch_seq, synced) "
        "VALUES (?, ?, randomblob(8), ?, ?, ?, ?)",
        [(i, s, T0 + i, payload(s, i), b, y) for i, s, b, y in rows],
    )
    if cipher is not None:
        db.execute("INSERT INTO meta VALUES ('store_key_check', ?)", (cipher.check_value,))
    db.commit()
    db.close()


@pytest.mark.parametrize("key", [None, b"k" * 32], ids=["plain", "encrypted"])
def test_a_schema_2_store_is_converted_with_its_batch_in_flight(
    tmp_path: Path, key: bytes | None
) -> None:
    path = tmp_path / "edge.db"
    _schema_2_store(path, key)

    with EdgeStore(path, key=key) as store:
        in_flight = store.next_batch()
        assert in_flight is not None
        store.mark_synced(in_flight.seq, 1)
        rest = drain(store)
        store.append("telemetry", rows(1, start=50))
        stats = store.stats()
        newest = store.next_batch()

    assert in_flight.seq == 2 and [r.local_id for r in in_flight.records] == [3, 5]
    assert [r.payload["temp"] for r in in_flight.records] == [23.0, 25.0]
    assert rest == [("alerts", 1), ("telemetry", 1)]  # 4, then 6; 7 was compressed away
    assert stats.records_ingested == 7 and stats.records_synced == 2 + 4
    assert newest is not None and [r.local_id for r in newest.records] == [8]


def test_a_store_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    sqlite3.connect(path).execute("PRAGMA user_version=9").connection.close()
    with pytest.raises(RuntimeError, match="upgrade the agent"):
        EdgeStore(path)
