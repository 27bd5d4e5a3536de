"""Sync batches on the wire: a pending batch as a Parquet (zstd) body with its sha256.

Encoding is deterministic: the same batch always yields the same bytes, so a batch resent
after a crash carries the sha256 the cloud may already have seen under the same
``(device_id, batch_seq)``.

The columns are the store's (``columns``): a field is int64, float64, bool or string as its
values were, int mixed with float is float64, and a field whose values mix other types is sent
as strings (JSON text of the non-string values) so that no batch is ever unsendable. A field
null in every row of the batch is left out, since a null column carries no information and has
no lake type. Encodings are chosen per column for thin links: record ids share their device
prefix (delta byte array), floats that are short decimals travel as scaled integers, delta
encoded (``protocol.wire_decimals``; the cloud restores them), other floats are byte-split
before zstd, the rest is dictionary-encoded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hybridai.edge.store.columns import JSON_TEXT, values_of
from hybridai.edge.store.edge_store import PendingBatch
from hybridai.protocol import wire_decimals
from hybridai.protocol.sync import DATE, DEVICE_ID, RECORD_ID, SITE, TIMESTAMP

if TYPE_CHECKING:
    import pyarrow as pa

ZSTD_LEVEL = 9


@dataclass(frozen=True)
class EncodedBatch:
    """A batch ready for ``PUT .../batches/{seq}``: body, checksum and sizes."""

    stream: str
    seq: int
    body: bytes
    sha256: str
    records: int


def _wire(field: pa.Field, column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A stored column as the lake takes it: JSON text only for the non-strings."""
    import pyarrow as pa

    if field.metadata != JSON_TEXT:
        return column
    values = values_of(field, column)
    return pa.array(
        [v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
        type=pa.string(),
    )


def lake_table(batch: PendingBatch, device_id: str, site: str) -> pa.Table:
    """The batch as the lake stores it: lake columns first, then fields by name."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = batch.table
    n = table.num_rows
    ts = table.column(TIMESTAMP).cast(pa.float64())
    seconds = pc.cast(pc.floor(ts), pa.int64())
    ids = np.char.add(f"{device_id}:", batch.ids.astype(str))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        RECORD_ID: pa.array(ids.tolist(), type=pa.string()),
        DEVICE_ID: pa.array([device_id] * n, type=pa.string()),
        SITE: pa.array([site] * n, type=pa.string()),
        TIMESTAMP: ts,
        DATE: pc.strftime(pc.cast(seconds, pa.timestamp("s", tz="UTC")), format="%Y-%m-%d"),
    }
    fields = [pa.field(name, column.type) for name, column in columns.items()]
    arrays = list(columns.values())
    for field in sorted(table.schema, key=lambda f: f.name):
        if field.name == TIMESTAMP:
            continue
        column = table.column(field.name)
        if column.null_count < n:
            fields.append(pa.field(field.name, column.type))
            arrays.append(_wire(field, column))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _decimals(table: pa.Table) -> pa.Table:
    """Float fields that hold decimals as scaled integers (``protocol.wire_decimals``)."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if field.name == TIMESTAMP or not pa.types.is_float64(field.type):
            continue
        decimals = wire_decimals.scaled(table.column(index))
        if decimals is not None:
            table = table.set_column(index, pa.field(field.name, decimals.type), decimals)
    return table


def encode_batch(batch: PendingBatch, device_id: str, site: str) -> EncodedBatch:
    """Encode one Parquet row per record (``lake_table``), deterministically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _decimals(lake_table(batch, device_id, site))
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    scaled = [f.name for f in table.schema if pa.types.is_decimal(f.type)]
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=[
            f.name
            for f in table.schema
            if f.name != RECORD_ID and f.name not in floats and f.name not in scaled
        ],
        column_encoding={
            RECORD_ID: "DELTA_BYTE_ARRAY",
            **dict.fromkeys(scaled, "DELTA_BINARY_PACKED"),
        },
        use_byte_stream_split=floats,
        write_statistics=[TIMESTAMP, DATE],
        store_schema=False,  # the Parquet types say it all; the Arrow schema would add ~650 B
        store_decimal_as_integer=True,
    )
    body = sink.getvalue().to_pybytes()
    return EncodedBatch(
        stream=batch.stream,
        seq=batch.seq,
        body=body,
        sha256=hashlib.sha256(body).hexdigest(),
        records=table.num_rows,
    )
