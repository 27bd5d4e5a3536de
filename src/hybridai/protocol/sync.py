"""The sync contract: Parquet batches from edge to lake, exactly once in the lake.

A batch is ``PUT /api/v1/devices/{device_id}/batches/{batch_seq}`` with a Parquet (zstd) body.
``(device_id, batch_seq)`` is the idempotency key: a device sends its batches strictly in
sequence, one at a time, and resends the same bytes until acknowledged, so the cloud can answer
a repeat with success without committing it twice.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

SHA256_HEADER = "X-Hybridai-Sha256"
DATASET_HEADER = "X-Hybridai-Dataset"
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
    dataset: str
    records: int
    duplicate: bool  # True when this batch had already been committed
    table_version: int
