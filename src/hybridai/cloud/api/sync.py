"""Sync ingest: each edge batch lands in the lake exactly once."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import cloud_of, require_device
from hybridai.cloud.context import Cloud
from hybridai.cloud.data.lake import LakeConflictError
from hybridai.cloud.data.lake_storage import LakeStorageError
from hybridai.cloud.devices import fleet
from hybridai.protocol import sync, wire_decimals
from hybridai.protocol.errors import ApiError, ErrorCode

router = APIRouter(prefix="/api/v1", tags=["sync"])
MAX_BATCH_BYTES = 64 * 1024 * 1024


def _read_parquet(body: bytes) -> pa.Table:
    try:
        return wire_decimals.restore(pq.read_table(io.BytesIO(body)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ApiError(
            400, ErrorCode.INVALID_INPUT, f"the batch body is not a readable Parquet file: {exc}"
        ) from None


def _commit(cloud: Cloud, device_id: str, seq: int, dataset: str, body: bytes) -> sync.BatchAck:
    table = _read_parquet(body)
    with cloud.session() as session:
        device = fleet.get_device(session, device_id)
    sites = set(table.column(sync.SITE).to_pylist()) if sync.SITE in table.column_names else set()
    if sites - {device.site}:
        raise ApiError(
            403,
            ErrorCode.FORBIDDEN,
            f"device '{device_id}' of site '{device.site}' may not write rows for sites "
            f"{sorted(s for s in sites if s != device.site)}",
        )
    try:
        version, duplicate = cloud.lake.commit_batch(dataset, device_id, seq, table)
    except ValueError as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, f"batch refused: {exc}") from None
    except (LakeConflictError, LakeStorageError) as exc:
        raise ApiError(
            503, ErrorCode.UPSTREAM_UNAVAILABLE, f"the lake cannot take the batch now: {exc}"
        ) from None
    return sync.BatchAck(
        device_id=device_id,
        batch_seq=seq,
        dataset=dataset,
        records=table.num_rows,
        duplicate=duplicate,
        table_version=version,
    )


@router.put("/devices/{device_id}/batches/{batch_seq}")
async def put_batch(device_id: str, batch_seq: int, request: Request) -> sync.BatchAck:
    """Commit one Parquet batch; a repeat of a committed ``(device, seq)`` is a success."""
    await run_in_threadpool(require_device, request, device_id)
    if batch_seq < 1:
        raise ApiError(400, ErrorCode.BAD_REQUEST, "batch_seq starts at 1")
    dataset = request.headers.get(sync.DATASET_HEADER)
    digest = request.headers.get(sync.SHA256_HEADER, "").lower()
    if not dataset or not digest:
        raise ApiError(
            400,
            ErrorCode.BAD_REQUEST,
            f"a batch needs the {sync.DATASET_HEADER} and {sync.SHA256_HEADER} headers",
        )
    body = await request.body()
    if len(body) > MAX_BATCH_BYTES:
        raise ApiError(
            413, ErrorCode.PAYLOAD_TOO_LARGE, "batch too large: split it (64 MiB at most)"
        )
    actual = hashlib.sha256(body).hexdigest()
    if actual != digest:
        raise ApiError(
            400,
            ErrorCode.DIGEST_MISMATCH,
            f"batch body sha256 {actual} does not match the declared {digest}: the body was "
            "damaged in transit; resend the same batch",
        )
    return await run_in_threadpool(_commit, cloud_of(request), device_id, batch_seq, dataset, body)
