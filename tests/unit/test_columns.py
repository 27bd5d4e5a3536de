"""Records as columns: exact decimals on the wire, content hashes, de-duplication by batch."""

from __future__ import annotations

import math
import random
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _batches import as_the_cloud_reads
from hybridai.edge.store.columns import from_records, row_hashes, to_rows, unify
from hybridai.edge.store.edge_store import EdgeStore, PendingBatch, StoredRecord
from hybridai.edge.sync.batches import encode_batch
from hybridai.protocol import wire_decimals

T0 = 1_700_000_000.0


def test_decimals_travel_as_integers_and_come_back_bit_for_bit() -> None:
    rng = random.Random(7)
    values = [round(rng.uniform(-500, 500), rng.randint(0, 4)) for _ in range(2000)]
    decimals = wire_decimals.scaled(pa.array([*values, None]))
    assert decimals is not None
    assert decimals.type == pa.decimal128(18, 4) and decimals.null_count == 1
    back = wire_decimals.restore(pa.table({"x": decimals}))
    assert back.schema.field("x").type == pa.float64()
    assert back.column("x").to_pylist() == [*values, None]


def test_a_batch_body_carries_decimals_that_the_cloud_reads_back_as_the_same_floats() -> None:
    rng = random.Random(3)
    records = [
        StoredRecord(i + 1, T0 + i, {"temp": round(rng.gauss(60, 5), 3), "pi": math.pi})
        for i in range(500)
    ]
    body = encode_batch(PendingBatch.of_records(1, "telemetry", records), "gw", "plant").body
    schema = pq.ParquetFile(pa.BufferReader(body)).schema_arrow
    assert pa.types.is_decimal(schema.field("temp").type)  # sent as scaled integers
    assert schema.field("pi").type == pa.float64()  # not a short decimal: sent as is
    table = as_the_cloud_reads(body)
    assert table.column("temp").to_pylist() == [r.payload["temp"] for r in records]
    assert table.column("pi").to_pylist() == [math.pi] * 500


@pytest.mark.parametrize(
    "values", [[0.1 + 0.2], [math.pi], [1e300], [float("nan"), 1.0], [1.23456789]]
)
def test_floats_that_are_not_short_decimals_stay_floats(values: list[float]) -> None:
    assert wire_decimals.scaled(pa.array(values)) is None


def test_the_same_record_hashes_the_same_in_any_batch() -> None:
    alone = from_records([{"ts": T0, "a": 1, "s": "x"}])
    mixed = from_records(
        [{"ts": T0 - 1, "a": 2.5, "b": True}, {"ts": T0, "a": 1.0, "s": "x", "b": None}]
    )
    with_strings = from_records([{"ts": T0, "a": 1, "s": "x"}, {"ts": T0, "a": "1", "s": 5}])
    h = row_hashes("telemetry", alone)[0]
    assert row_hashes("telemetry", mixed)[1] == h  # 1 == 1.0, null == absent
    assert row_hashes("telemetry", with_strings)[0] == h  # even when a field mixes types
    assert row_hashes("telemetry", with_strings)[1] != h  # "1" is not 1
    assert row_hashes("alerts", alone)[0] != h  # the stream is part of the content
    assert row_hashes("telemetry", alone, key=b"k" * 32)[0] != h  # keyed with a store key
    swapped = from_records([{"ts": T0, "a": "x", "s": 1}])
    assert row_hashes("telemetry", swapped)[0] != h  # field names count, not just values


def test_mixed_fields_read_back_exactly_and_unify_across_chunks() -> None:
    records = [{"ts": T0, "v": 1, "w": 2}, {"ts": T0 + 1, "v": "one", "w": 2.5}]
    table = from_records(records)
    assert [dict(f, ts=ts) for ts, f in to_rows(table)] == records
    other = from_records([{"ts": T0 + 2, "v": True, "x": "new"}])
    both = unify([table, other])
    assert both.column_names == ["ts", "v", "w", "x"]
    assert [f for _, f in to_rows(both)] == [
        {"v": 1, "w": 2.0},
        {"v": "one", "w": 2.5},
        {"v": True, "x": "new"},
    ]


def test_duplicates_are_found_within_a_batch_across_batches_and_after_reopen(
    tmp_path: Path,
) -> None:
    batch = [{"ts": T0 + i, "v": float(i)} for i in range(100)]
    with EdgeStore(tmp_path / "edge.db") as store:
        first = store.append("telemetry", batch + batch[:10])
        again = store.append("telemetry", [*batch[50:], {"ts": T0 + 500, "v": 1.0}])
    with EdgeStore(tmp_path / "edge.db") as store:
        reopened = store.append("telemetry", batch[::7])
        pending = store.next_batch(max_records=1000)
    assert (first.accepted, first.duplicates) == (100, 10)
    assert (again.accepted, again.duplicates) == (1, 50)
    assert (reopened.accepted, reopened.duplicates) == (0, 15)
    assert pending is not None and len(pending) == 101
    assert list(pending.ids) == sorted(set(pending.ids))  # unique, in arrival order
    assert sorted(r.ts for r in pending.records) == [*(T0 + i for i in range(100)), T0 + 500]


def test_concurrent_appends_of_the_same_records_store_them_once(tmp_path: Path) -> None:
    batch = [{"ts": T0 + i, "v": float(i)} for i in range(500)]
    results = []
    with EdgeStore(tmp_path / "edge.db") as store:
        threads = [
            threading.Thread(target=lambda: results.append(store.append("telemetry", batch)))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = store.stats()
    assert sum(r.accepted for r in results) == 500
    assert sum(r.duplicates for r in results) == 1500
    assert stats.backlog_records == 500


def test_retention_inside_a_chunk_keeps_the_ids_of_what_is_left(tmp_path: Path) -> None:
    stamps = [T0 + 5, T0 - 5, T0 + 6, T0 - 6, T0 - 7, T0 + 7]  # old and new interleaved
    with EdgeStore(tmp_path / "edge.db") as store:
        store.append("local", [{"ts": ts, "i": i} for i, ts in enumerate(stamps)])
        deleted, overdue = store.expire("local", T0, local_only=True)
        batch = store.next_batch()
    assert (deleted, overdue) == (3, 0)
    assert batch is not None
    assert [(int(i), r.payload["i"]) for i, r in zip(batch.ids, batch.records, strict=True)] == [
        (1, 0),
        (3, 2),
        (6, 5),
    ]


def test_small_appends_fold_into_one_chunk_and_keep_their_place(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "edge.db") as store:
        store.append("alerts_raw", [{"ts": T0 - 100, "v": -1.0}])  # older, same priority
        for i in range(300):  # one record per call, as MQTT delivers them
            store.append("telemetry", [{"ts": T0 + i, "v": float(i), "m": f"m{i % 3}"}])
        store.append("alerts_raw", [{"ts": T0 + 1000, "v": 1.0}])
        single = store.stats().streams["telemetry"].bytes_stored / 300
        chunks = store._conn.execute(
            "SELECT COUNT(*) FROM chunks WHERE stream = 'telemetry'"
        ).fetchone()[0]
        first = store.next_batch(max_records=1000)
        assert first is not None
        store.mark_synced(first.seq, 1)
        second = store.next_batch(max_records=1000)
        again = store.append("telemetry", [{"ts": T0 + 7, "v": 7.0, "m": "m1"}])
    assert chunks == 1 and single < 40  # not a kilobyte of framing per record
    assert second is not None
    assert list(second.ids) == list(range(2, 302))  # one stream appending: ids stay as given
    # alerts_raw arrived first and its chunk kept that place, though it grew later
    assert (first.stream, len(first)) == ("alerts_raw", 2)
    assert (second.stream, len(second)) == ("telemetry", 300)
    assert [r.payload["v"] for r in second.records] == [float(i) for i in range(300)]
    assert again.duplicates == 1  # folded records are still known to de-duplication
