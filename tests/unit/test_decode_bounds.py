"""The decode bounds read what a body will cost from its headers, and take good bodies as is."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybridai.cloud.data.parquet_bounds import BadBatch, BatchLimits, BatchTooLarge, read_batch
from hybridai.edge.ingest.arrow_bounds import measure


def _stream(table: pa.Table, batches: int = 1, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        for _ in range(batches):
            writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_measure_counts_rows_and_decoded_bytes_of_every_batch(compression: str | None) -> None:
    table = pa.table({"ts": pa.array(np.arange(1000.0)), "m": pa.array(["a", "bb"] * 500)})
    extent = measure(_stream(table, 3, compression))
    assert extent.rows == 3000
    assert extent.longest_node == 1000
    # The buffers as written (lengths padded to 8 bytes), never less than the data itself.
    assert 3 * table.nbytes <= extent.decoded_bytes <= 3 * (table.nbytes + 256)


def test_measure_counts_dictionary_batches_as_bytes_not_rows() -> None:
    table = pa.table({"m": pa.array(["x" * 100, "y"] * 10).dictionary_encode()})
    extent = measure(_stream(table, compression="zstd"))
    assert extent.rows == 20
    assert extent.decoded_bytes >= 101


def _parquet(table: pa.Table, **options: object) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)  # type: ignore[arg-type]
    return sink.getvalue()


GOOD = pa.table(
    {
        "record_id": [f"r{i}" for i in range(5000)],
        "ts": pa.array(np.arange(5000.0)),
        "value": pa.array(np.arange(5000) * 0.25).cast(pa.decimal128(18, 2)),
        "ok": [i % 2 == 0 for i in range(5000)],
    }
)


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "zstd"},
        {"compression": "zstd", "use_dictionary": False},
        {"use_dictionary": False, "column_encoding": {"record_id": "DELTA_BYTE_ARRAY"}},
        {"row_group_size": 700},
    ],
    ids=["dictionary", "plain", "delta", "row-groups"],
)
def test_a_good_batch_reads_as_pyarrow_reads_it(options: dict[str, object]) -> None:
    body = _parquet(GOOD, **options)
    assert read_batch(body, BatchLimits()).equals(pq.read_table(io.BytesIO(body)))


def test_limits_refuse_rows_bytes_and_nesting() -> None:
    body = _parquet(GOOD)
    with pytest.raises(BatchTooLarge, match="holds 5000 rows"):
        read_batch(body, BatchLimits(max_rows=4999))
    with pytest.raises(BatchTooLarge, match="decodes to at least"):
        read_batch(body, BatchLimits(max_decoded_bytes=50_000))
    nested = _parquet(pa.table({"xs": [[1, 2], [3]]}))
    with pytest.raises(BadBatch, match="xs are nested"):
        read_batch(nested, BatchLimits())
    with pytest.raises(BadBatch, match="not a readable Parquet file"):
        read_batch(b"PAR1 but not really", BatchLimits())
