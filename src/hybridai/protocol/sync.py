"""The sync contract: Parquet batches from edge to lake, exactly once in the lake.

A batch is ``PUT /api/v1/devices/{device_id}/batches/{batch_seq}`` with a Parquet (zstd) body.
``(device_id, batch_seq)`` is the idempotency key: a device sends its batches strictly in
sequence, one at a time, and resends the same bytes until acknowledged, so the cloud can answer
a repeat with success without committing it twice.

A batch that cannot join its stream's lake table (a column of another type than the table or
the stream's declared schema) is quarantined: kept in the cloud apart from the lake and
acknowledged with ``quarantined`` and the reason, so the device's sync moves on and no other
device's batches wait on it. Operators see it in the fleet view and under
``GET /api/v1/quarantine``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

SHA256_HEADER = "X-Hybridai-Sha256"
STREAM_HEADER = "X-Hybridai-Stream"
RECORDS_HEADER = "X-Hybridai-Records"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"

# Columns every lake row carries besides the record's own fields.
RECORD_ID = "record_id"  # "{device_id}:{local sequence}", unique fleet-wide
DEVICE_ID = "device_id"
SITE = "site"
TIMESTAMP = "ts"  # seconds since the epoch, float
DATE = "date"  # partition column, YYYY-MM-DD of ts (UTC)


class BatchAck(BaseModel):
    device_id: str
    batch_seq: int = Field(ge=1)
    stream: str
    records: int
    duplicate: bool  # True when this batch had already been committed
    table_version: int
    quarantined: bool = False  # kept apart from the lake: its columns do not fit the table
    reason: str | None = None  # why it was quarantined (field names and types, never values)


class QuarantinedBatch(BaseModel):
    """A batch the lake could not take, kept in the cloud for an operator to look at."""

    device_id: str
    batch_seq: int | None  # None: rows moved out of the lake when a declared schema retyped it
    stream: str
    records: int
    reason: str
    quarantined_at: float
