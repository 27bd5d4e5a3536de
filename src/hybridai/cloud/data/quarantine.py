"""Quarantine: a batch that cannot join its lake table stays with the device that sent it.

One Delta table holds a stream for the whole fleet, so its column types are shared. Left to
itself the first writer fixes them, and a batch of another type is either refused (the device's
sync, which goes strictly in sequence, then waits on it for ever) or silently coerced (a float
into a string column, a boolean into an integer one). Instead every batch is fitted first:

- the stream's declared schema (``stream_schemas``, the device's site's, else the fleet's) names
  a field's type; without one, the lake table's column does; an integer column joins a number
  one (widened, exactly as ``protocol.streams`` allows); nothing else is converted;
- a batch that does not fit is quarantined: its body is kept in the blob store under
  ``quarantine/``, a row records the device, sequence, stream and the reason (field names and
  types, never a value), and the device is answered ``quarantined`` so its sync moves on;
- a declared type wins over a lake table a wrong first writer created: the table is retyped
  once (``Lake.retype``), and rows that cannot take the declared type are quarantined too.

A repeat of a quarantined ``(device, seq)`` gets the same answer: quarantine is exactly-once
like the lake. ``GET /api/v1/quarantine`` lists what is kept; the fleet view counts it per device.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import Fitter, Lake, LakeSchemaError
from hybridai.protocol.fleet import Device
from hybridai.protocol.streams import FieldType
from hybridai.protocol.sync import DEVICE_ID, QuarantinedBatch
from hybridai.storage.blobs import BlobStore
from hybridai.storage.tables import QuarantinedBatchRow

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    "string": pa.string(),
    "number": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
}


def kind(data_type: pa.DataType) -> str:
    """A column type in the words of stream schemas (other types by Arrow's name)."""
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_integer(data_type):
        return "integer"
    if pa.types.is_floating(data_type):
        return "number"
    return str(data_type)


@dataclass
class Fit:
    """A batch fitted to its stream: the table to commit, or the problems that stop it."""

    table: pa.Table
    problems: list[str] = field(default_factory=list)
    retype: dict[str, pa.DataType] = field(default_factory=dict)  # lake columns to fix first

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


class Retype(LakeSchemaError):
    """The declared schema contradicts the lake table's types: retype it, then commit."""

    def __init__(self, types: dict[str, pa.DataType]) -> None:
        super().__init__("the lake table's types differ from the declared schema")
        self.types = types


def fitter(table: pa.Table, declared: Mapping[str, FieldType]) -> Fitter:
    """``fit`` as ``Lake.commit_batch`` takes it: the table to commit, or ``LakeSchemaError``."""

    def fitted(schema: pa.Schema | None) -> pa.Table:
        result = fit(table, declared, schema)
        if result.retype:
            raise Retype(result.retype)
        if result.problems:
            raise LakeSchemaError(result.reason)
        return result.table

    return fitted


def fit(table: pa.Table, declared: Mapping[str, FieldType], lake: pa.Schema | None) -> Fit:
    """Cast ``table`` to the stream's types where that is exact, else say which fields differ.

    ``declared`` are the stream's declared field types; ``lake`` the table's schema (None: no
    table yet). A declared type that contradicts the lake's column asks for a retype first.
    """
    lake_types = {} if lake is None else {f.name: f.type for f in lake}
    retype: dict[str, pa.DataType] = {}
    problems: list[str] = []
    for index, column_field in enumerate(table.schema):
        name, got = column_field.name, column_field.type
        target, source = lake_types.get(name), "the lake table"
        wanted = declared.get(name)
        if wanted is not None:
            declared_type = ARROW_TYPES[wanted]
            widened = wanted == "integer" and target is not None and kind(target) == "number"
            if target is not None and target != declared_type and not widened:
                retype[name] = declared_type  # the declaration wins over a first writer
            if not widened:
                target, source = declared_type, "the declared schema"
        if target is None or got == target:
            continue
        if pa.types.is_integer(got) and (pa.types.is_floating(target) or target == pa.int64()):
            table = table.set_column(
                index, pa.field(name, target), table.column(index).cast(target)
            )
            continue
        problems.append(f"field '{name}' is {kind(got)} but {source} has it as {kind(target)}")
    return Fit(table, problems, retype)


def blob_key(stream: str, device_id: str, seq: int | None, tag: str = "") -> str:
    name = f"{seq:012d}" if seq is not None else f"retype-{tag}"
    return f"quarantine/{stream}/{device_id}/{name}.parquet"


def _wire(row: QuarantinedBatchRow) -> QuarantinedBatch:
    return QuarantinedBatch(
        device_id=row.device_id,
        batch_seq=row.batch_seq,
        stream=row.stream,
        records=row.records,
        reason=row.reason,
        quarantined_at=row.quarantined_at,
    )


def find(session: Session, device_id: str, seq: int) -> QuarantinedBatch | None:
    """The quarantined batch ``(device_id, seq)``, if that batch was quarantined."""
    row = session.scalars(
        select(QuarantinedBatchRow).where(
            QuarantinedBatchRow.device_id == device_id, QuarantinedBatchRow.batch_seq == seq
        )
    ).first()
    return None if row is None else _wire(row)


def keep(
    session: Session,
    blobs: BlobStore,
    *,
    device_id: str,
    seq: int | None,
    stream: str,
    body: bytes,
    records: int,
    reason: str,
    now: float,
) -> QuarantinedBatch:
    """Keep a batch apart from the lake: body in the blob store, a row saying why.

    Exactly once per ``(device_id, seq)``: a concurrent or repeated keep returns the first.
    """
    key = blob_key(stream, device_id, seq, tag=f"{now:.6f}")
    blobs.put(key, body)
    row = QuarantinedBatchRow(
        device_id=device_id,
        batch_seq=seq,
        stream=stream,
        records=records,
        reason=reason,
        blob_key=key,
        quarantined_at=now,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # another replica kept this very batch first
        session.rollback()
        assert seq is not None
        first = find(session, device_id, seq)
        assert first is not None
        return first
    return _wire(row)


def keep_rows(
    session: Session, blobs: BlobStore, stream: str, rows: pa.Table, reason: str, now: float
) -> list[QuarantinedBatch]:
    """Quarantine lake rows a retype took out, one entry per device that wrote them."""
    kept = []
    for device_id in sorted(set(rows.column(DEVICE_ID).to_pylist())):
        mine = rows.filter(pa.compute.equal(rows.column(DEVICE_ID), device_id))
        sink = io.BytesIO()
        pq.write_table(mine, sink, compression="zstd")
        kept.append(
            keep(
                session,
                blobs,
                device_id=str(device_id),
                seq=None,
                stream=stream,
                body=sink.getvalue(),
                records=mine.num_rows,
                reason=reason,
                now=now,
            )
        )
    return kept


def retype(
    session: Session,
    blobs: BlobStore,
    lake: Lake,
    stream: str,
    types: Mapping[str, pa.DataType],
    now: float,
) -> list[QuarantinedBatch]:
    """Give the lake table the declared types; quarantine the rows that cannot take them."""
    misfits = lake.retype(stream, types)
    if misfits is None or misfits.num_rows == 0:
        return []
    fields = ", ".join(f"'{name}' as {kind(t)}" for name, t in sorted(types.items()))
    reason = f"rows left the lake table when the declared schema retyped {fields}"
    return keep_rows(session, blobs, stream, misfits, reason, now)


def listing(
    session: Session, device_id: str | None = None, stream: str | None = None, limit: int = 100
) -> list[QuarantinedBatch]:
    """Quarantined batches, newest first, optionally of one device or stream."""
    query = select(QuarantinedBatchRow).order_by(QuarantinedBatchRow.id.desc()).limit(limit)
    if device_id is not None:
        query = query.where(QuarantinedBatchRow.device_id == device_id)
    if stream is not None:
        query = query.where(QuarantinedBatchRow.stream == stream)
    return [_wire(row) for row in session.scalars(query)]


def per_device(session: Session) -> dict[str, tuple[int, str]]:
    """Per device: how many of its batches are quarantined and the latest reason."""
    counted = select(QuarantinedBatchRow.device_id, func.count()).group_by(
        QuarantinedBatchRow.device_id
    )
    counts = {str(device_id): int(n) for device_id, n in session.execute(counted)}
    newest = select(func.max(QuarantinedBatchRow.id)).group_by(QuarantinedBatchRow.device_id)
    latest = {
        str(device_id): str(reason)
        for device_id, reason in session.execute(
            select(QuarantinedBatchRow.device_id, QuarantinedBatchRow.reason).where(
                QuarantinedBatchRow.id.in_(newest)
            )
        )
    }
    return {d: (n, latest[d]) for d, n in counts.items()}


def on_devices(session: Session, devices: list[Device]) -> list[Device]:
    """The devices with their quarantined batches counted (the fleet view shows them)."""
    counts = per_device(session)
    return [
        d.model_copy(
            update={
                "quarantined_batches": counts[d.device_id][0],
                "last_quarantine": counts[d.device_id][1],
            }
        )
        if d.device_id in counts
        else d
        for d in devices
    ]
