"""Sync batches on the wire: a pending batch as a Parquet (zstd) body with its sha256.

Encoding is deterministic: the same batch always yields the same bytes, so a batch resent
after a crash carries the sha256 the cloud may already have seen under the same
``(device_id, batch_seq)``.

Column types are fixed per batch from the values, never by guesswork that could fail: a column
of only ints is int64, ints mixed with floats is float64, only bools is bool, only strings is
string; any other mix is written as strings (JSON text of the non-string values) so that no
batch is ever unsendable. A field missing from a row is null; a field null in every row of
the batch is left out, since a null column carries no information and has no lake type.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hybridai.edge.store import PendingBatch
from hybridai.protocol.sync import DATE, DEVICE_ID, RECORD_ID, SITE, TIMESTAMP

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class EncodedBatch:
    """A batch ready for ``PUT .../batches/{seq}``: body, checksum and sizes."""

    dataset: str
    seq: int
    body: bytes
    sha256: str
    records: int
    raw_json_bytes: int  # the same records as compact JSON, to show what Parquet saves


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64_MIN <= value <= _INT64_MAX else "float"
    if isinstance(value, float):
        return "float"
    return "str"


def _column(values: list[Any]) -> pa.Array | None:
    kinds = {_kind(v) for v in values if v is not None}
    if not kinds:
        return None
    convert: Callable[[Any], Any]
    if kinds == {"bool"}:
        return pa.array(values, type=pa.bool_())
    if kinds == {"int"}:
        return pa.array(values, type=pa.int64())
    if kinds <= {"int", "float"}:
        convert, arrow_type = float, pa.float64()
    elif kinds == {"str"}:
        return pa.array(values, type=pa.string())
    else:

        def convert(v: Any) -> str:
            return v if isinstance(v, str) else json.dumps(v)

        arrow_type = pa.string()
    return pa.array([None if v is None else convert(v) for v in values], type=arrow_type)


def encode_batch(batch: PendingBatch, device_id: str, site: str) -> EncodedBatch:
    """Encode one Parquet row per record: lake columns first, then fields by name."""
    rows = batch.records
    columns: dict[str, pa.Array] = {
        RECORD_ID: pa.array([f"{device_id}:{r.local_id}" for r in rows], type=pa.string()),
        DEVICE_ID: pa.array([device_id] * len(rows), type=pa.string()),
        SITE: pa.array([site] * len(rows), type=pa.string()),
        TIMESTAMP: pa.array([r.ts for r in rows], type=pa.float64()),
        DATE: pa.array([_date(r.ts) for r in rows], type=pa.string()),
    }
    names = sorted({key for r in rows for key in r.payload})
    for name in names:
        array = _column([r.payload.get(name) for r in rows])
        if array is not None:
            columns[name] = array
    table = pa.table(columns)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    body = sink.getvalue()
    raw = json.dumps(
        [{TIMESTAMP: r.ts, **r.payload} for r in rows], separators=(",", ":"), ensure_ascii=False
    )
    return EncodedBatch(
        dataset=batch.stream,
        seq=batch.seq,
        body=body,
        sha256=hashlib.sha256(body).hexdigest(),
        records=len(rows),
        raw_json_bytes=len(raw.encode()),
    )


def decode_batch(body: bytes) -> pa.Table:
    """Read a batch body back as an Arrow table (tests, debugging)."""
    return pq.read_table(pa.BufferReader(body))
