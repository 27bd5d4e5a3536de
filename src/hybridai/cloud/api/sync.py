"""Sync ingest: each edge batch lands in the lake exactly once, or in quarantine.

A batch whose columns do not fit the stream (its declared schema, else its lake table) is
quarantined (``cloud.data.quarantine``) and acknowledged with HTTP 202 and ``quarantined``:
the sending device's sync moves on and nobody else's waits on it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Annotated

import pyarrow as pa
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import cloud_of, require, require_device
from hybridai.cloud.context import Cloud
from hybridai.cloud.data import quarantine, stream_schemas
from hybridai.cloud.data.lake import LakeConflictError, LakeSchemaError
from hybridai.cloud.data.lake_storage import LakeStorageError
from hybridai.cloud.data.parquet_bounds import BadBatch, BatchLimits, BatchTooLarge, read_batch
from hybridai.cloud.devices import fleet
from hybridai.cloud.settings import CloudSettings
from hybridai.protocol import sync, wire_decimals
from hybridai.protocol.errors import ApiError, ErrorCode

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["sync"])
MAX_BATCH_BYTES = 64 * 1024 * 1024


def _read_parquet(body: bytes, settings: CloudSettings) -> pa.Table:
    """The batch's rows, refused before they cost memory when there are too many (413)."""
    limits = BatchLimits(settings.max_batch_rows, settings.max_batch_decoded_bytes)
    try:
        return wire_decimals.restore(read_batch(body, limits))
    except BatchTooLarge as exc:
        raise ApiError(413, ErrorCode.PAYLOAD_TOO_LARGE, str(exc)) from None
    except BadBatch as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, str(exc)) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ApiError(
            400, ErrorCode.INVALID_INPUT, f"the batch body is not a readable Parquet file: {exc}"
        ) from None


def _commit(cloud: Cloud, device_id: str, seq: int, stream: str, body: bytes) -> sync.BatchAck:
    table = _read_parquet(body, cloud.settings)
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
    with cloud.session() as session:
        kept = quarantine.find(session, device_id, seq)
        declared = stream_schemas.for_site(session, device.site).get(stream)
    if kept is not None:  # a repeat of a batch already quarantined
        return _quarantined(device_id, seq, stream, kept.records, kept.reason, duplicate=True)
    fit = quarantine.fitter(table, declared.fields if declared else {})
    try:
        try:
            version, duplicate = cloud.lake.commit_batch(stream, device_id, seq, table, fit)
        except quarantine.Retype as retype:  # the declaration wins over a wrong first writer
            with cloud.session() as session:
                quarantine.retype(
                    session, cloud.blobs, cloud.lake, stream, retype.types, time.time()
                )
            version, duplicate = cloud.lake.commit_batch(stream, device_id, seq, table, fit)
    except LakeSchemaError as exc:  # its columns do not fit (the reason names no value)
        return _quarantine(cloud, device_id, seq, stream, body, table, str(exc))
    except ValueError as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, f"batch refused: {exc}") from None
    except (LakeConflictError, LakeStorageError) as exc:
        raise ApiError(
            503, ErrorCode.UPSTREAM_UNAVAILABLE, f"the lake cannot take the batch now: {exc}"
        ) from None
    return sync.BatchAck(
        device_id=device_id,
        batch_seq=seq,
        stream=stream,
        records=table.num_rows,
        duplicate=duplicate,
        table_version=version,
    )


def _quarantine(
    cloud: Cloud, device_id: str, seq: int, stream: str, body: bytes, table: pa.Table, why: str
) -> sync.BatchAck:
    committed = cloud.lake.committed_seq(stream, device_id)
    if committed is not None and committed >= seq:  # in the lake already (retyped since)
        return sync.BatchAck(
            device_id=device_id,
            batch_seq=seq,
            stream=stream,
            records=table.num_rows,
            duplicate=True,
            table_version=cloud.lake.version(stream),
        )
    with cloud.session() as session:
        kept = quarantine.keep(
            session,
            cloud.blobs,
            device_id=device_id,
            seq=seq,
            stream=stream,
            body=body,
            records=table.num_rows,
            reason=why,
            now=time.time(),
        )
    log.warning(
        "batch %d of device %s quarantined (stream %s): %s", seq, device_id, stream, kept.reason
    )
    return _quarantined(device_id, seq, stream, kept.records, kept.reason, duplicate=False)


def _quarantined(
    device_id: str, seq: int, stream: str, records: int, reason: str, *, duplicate: bool
) -> sync.BatchAck:
    return sync.BatchAck(
        device_id=device_id,
        batch_seq=seq,
        stream=stream,
        records=records,
        duplicate=duplicate,
        table_version=-1,
        quarantined=True,
        reason=reason,
    )


@router.put("/devices/{device_id}/batches/{batch_seq}")
async def put_batch(
    device_id: str, batch_seq: int, request: Request, response: Response
) -> sync.BatchAck:
    """Commit one Parquet batch; a repeat of a committed ``(device, seq)`` is a success."""
    await run_in_threadpool(require_device, request, device_id)
    if batch_seq < 1:
        raise ApiError(400, ErrorCode.BAD_REQUEST, "batch_seq starts at 1")
    stream = request.headers.get(sync.STREAM_HEADER)
    digest = request.headers.get(sync.SHA256_HEADER, "").lower()
    if not stream or not digest:
        raise ApiError(
            400,
            ErrorCode.BAD_REQUEST,
            f"a batch needs the {sync.STREAM_HEADER} and {sync.SHA256_HEADER} headers",
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
    started = time.perf_counter()
    ack = await run_in_threadpool(_commit, cloud_of(request), device_id, batch_seq, stream, body)
    cloud_of(request).metrics.synced(ack, len(body), time.perf_counter() - started)
    log.info("batch %d of device %s: %d records to the lake", batch_seq, device_id, ack.records)
    if ack.quarantined:
        response.status_code = 202  # taken, but kept apart from the lake: see ack.reason
    return ack


@router.get("/quarantine")
def list_quarantine(
    request: Request,
    device_id: Annotated[str | None, Query(max_length=63)] = None,
    stream: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[sync.QuarantinedBatch]:
    """Batches the lake could not take, newest first: who sent them, for which stream, why."""
    require(request, "read")
    with cloud_of(request).session() as session:
        return quarantine.listing(session, device_id, stream, limit)
