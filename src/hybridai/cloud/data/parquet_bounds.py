"""Read a device's Parquet batch without letting it decode to more than the cloud allows.

A megabyte of Parquet can hold hundreds of millions of values (a constant column encodes to
almost nothing), and a text column can repeat one long string on every row (a dictionary, or
the prefix sharing of DELTA_BYTE_ARRAY). So the footer is read first: its row count, its
columns (flat ones only: a lake row has no nested fields) and the fixed-width columns' size.
Then the rows are decoded a slice at a time, each slice small enough that even its longest
possible text values fit the limit, with a running total of the decoded bytes. A batch over a
limit is refused as ``BatchTooLarge`` before it has cost more than about the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


class BatchTooLarge(ValueError):
    """The batch would decode to more rows or bytes than the cloud takes at once (HTTP 413)."""


class BadBatch(ValueError):
    """The body is not a Parquet batch the lake can take (HTTP 400)."""


@dataclass(frozen=True)
class BatchLimits:
    """The most one batch may decode to (``max_batch_rows``, ``max_batch_decoded_bytes``)."""

    max_rows: int = 1_000_000
    max_decoded_bytes: int = 64 * 2**20


def _value_type(kind: pa.DataType) -> pa.DataType:
    """A dictionary column's values' type (a batch written from Arrow may keep dictionaries)."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _is_text(kind: pa.DataType) -> bool:
    kind = _value_type(kind)
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _row_bytes(schema: pa.Schema) -> int:
    """Decoded bytes per row of the fixed-width columns (a validity bit each, rounded up)."""
    bits = 0
    for field in schema:
        kind = _value_type(field.type)
        if not _is_text(kind) and not pa.types.is_null(kind):
            bits += kind.bit_width + 1
    return math.ceil(bits / 8)


def _too_large(what: str, limits: BatchLimits) -> BatchTooLarge:
    return BatchTooLarge(
        f"the batch {what}, more than the {limits.max_rows} rows / {limits.max_decoded_bytes} "
        "decoded bytes the cloud takes in one batch: send smaller batches"
    )


def _expanded_bytes(column: pa.Array) -> int:
    """Bytes a column takes with its dictionary (if any) expanded, without expanding it."""
    if not isinstance(column, pa.DictionaryArray):
        return int(column.nbytes)
    kind = column.type.value_type
    if not _is_text(kind):
        return len(column) * math.ceil((int(kind.bit_width) + 1) / 8)
    lengths = pc.binary_length(column.dictionary)
    taken = pc.sum(pc.take(lengths, column.indices)).as_py()
    return int(taken or 0) + 8 * len(column)  # values plus offsets


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Every dictionary column as plain values (what the lake stores)."""
    columns = [
        c.dictionary_decode() if isinstance(c, pa.DictionaryArray) else c for c in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _rows_per_read(meta: pq.FileMetaData, schema: pa.Schema, limits: BatchLimits) -> int:
    """Rows to decode at a time so that one read stays within the limit.

    A text value is never longer than its column chunk's uncompressed size (its page, or its
    dictionary page, holds it whole), whatever the encoding repeats it from.
    """
    longest: dict[str, int] = {}
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            size = max(chunk.total_uncompressed_size, 0)
            longest[chunk.path_in_schema] = max(longest.get(chunk.path_in_schema, 0), size)
    text = [f.name for f in schema if _is_text(f.type)]
    per_row = _row_bytes(schema) + sum(longest.get(name, 0) + 8 for name in text)
    return max(1, min(65536, limits.max_decoded_bytes // max(per_row, 1)))


def read_batch(body: bytes, limits: BatchLimits) -> pa.Table:
    """The batch as a table, or ``BatchTooLarge`` / ``BadBatch`` before it costs the memory."""
    try:
        file = pq.ParquetFile(pa.BufferReader(body))
        meta, schema = file.metadata, file.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadBatch(f"the batch body is not a readable Parquet file: {exc}") from None
    if meta.num_rows > limits.max_rows:
        raise _too_large(f"holds {meta.num_rows} rows", limits)
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise BadBatch(f"column(s) {', '.join(nested)} are nested: a batch holds flat columns")
    estimate = meta.num_rows * _row_bytes(schema)
    if estimate > limits.max_decoded_bytes:
        raise _too_large(f"decodes to at least {estimate} bytes", limits)
    batches: list[pa.RecordBatch] = []
    total = 0
    try:
        for batch in file.iter_batches(batch_size=_rows_per_read(meta, schema, limits)):
            total += sum(_expanded_bytes(column) for column in batch.columns)
            if total > limits.max_decoded_bytes:
                raise _too_large(f"decodes to at least {total} bytes", limits)
            batches.append(_decoded(batch))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise BadBatch(f"the batch body is not a readable Parquet file: {exc}") from None
    if not batches:
        return pa.table({f.name: pa.array([], _value_type(f.type)) for f in schema})
    return pa.Table.from_batches(batches)
