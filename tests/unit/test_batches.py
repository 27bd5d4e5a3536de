from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _batches import as_the_cloud_reads
from hybridai.cloud.data.parquet_bounds import BadBatch
from hybridai.edge.store.edge_store import EdgeStore, PendingBatch, StoredRecord
from hybridai.edge.sync.batches import encode_batch

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def batch(*payloads: dict[str, object], seq: int = 1) -> PendingBatch:
    records = [
        StoredRecord(local_id=i + 1, ts=T0 + i * 3600, payload=dict(p))
        for i, p in enumerate(payloads)
    ]
    return PendingBatch.of_records(seq, "telemetry", records)


def test_lake_columns_come_first_then_fields_by_name() -> None:
    encoded = encode_batch(batch({"temp": 20.5, "machine": "m1"}), "gw-1", "plant-a")

    table = as_the_cloud_reads(encoded.body)

    assert table.column_names == ["record_id", "device_id", "site", "ts", "date", "machine", "temp"]
    assert table.to_pylist() == [
        {
            "record_id": "gw-1:1",
            "device_id": "gw-1",
            "site": "plant-a",
            "ts": T0,
            "date": "2023-11-14",
            "machine": "m1",
            "temp": 20.5,
        }
    ]
    assert table.schema.field("ts").type == pa.float64()


def test_metadata_describes_the_body() -> None:
    encoded = encode_batch(batch({"a": 1}, {"a": 2}, seq=7), "gw-1", "plant-a")

    assert encoded.seq == 7
    assert encoded.stream == "telemetry"
    assert encoded.records == 2
    assert encoded.sha256 == hashlib.sha256(encoded.body).hexdigest()


def test_body_is_zstd_parquet() -> None:
    encoded = encode_batch(batch({"a": 1}), "gw-1", "plant-a")

    meta = pq.ParquetFile(io.BytesIO(encoded.body)).metadata

    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_date_follows_utc_midnight() -> None:
    encoded = encode_batch(batch({}, {}, {}), "gw-1", "plant-a")  # 22:13, 23:13, 00:13

    assert as_the_cloud_reads(encoded.body).column("date").to_pylist() == [
        "2023-11-14",
        "2023-11-14",
        "2023-11-15",
    ]


def test_column_types() -> None:
    encoded = encode_batch(
        batch(
            {"i": 1, "mixed": 1, "flag": True, "name": "x", "odd": 1, "gone": None},
            {"i": 2, "mixed": 2.5, "flag": False, "odd": "two", "gone": None},
            {"i": None, "mixed": 3, "huge": 2**70},
        ),
        "gw-1",
        "plant-a",
    )

    table = as_the_cloud_reads(encoded.body)

    schema = table.schema
    assert schema.field("i").type == pa.int64()
    assert schema.field("mixed").type == pa.float64()
    assert table.column("mixed").to_pylist() == [1.0, 2.5, 3.0]
    assert schema.field("flag").type == pa.bool_()
    assert table.column("flag").to_pylist() == [True, False, None]
    assert table.column("name").to_pylist() == ["x", None, None]
    assert schema.field("odd").type == pa.string()
    assert table.column("odd").to_pylist() == ["1", "two", None]
    assert schema.field("huge").type == pa.float64()
    assert "gone" not in table.column_names


def test_encoding_is_deterministic_across_store_reopen(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with EdgeStore(path) as store:
        store.append(
            "telemetry", [{"ts": T0 + i, "v": i * 0.5, "k": f"m{i % 3}"} for i in range(50)]
        )
        first = store.next_batch()
    with EdgeStore(path) as store:
        again = store.next_batch()
    assert first is not None and again is not None

    a = encode_batch(first, "gw-1", "plant-a")
    b = encode_batch(again, "gw-1", "plant-a")

    assert a == b
    assert a.sha256 == b.sha256


def test_the_cloud_refuses_garbage() -> None:
    with pytest.raises(BadBatch):
        as_the_cloud_reads(b"not parquet")
