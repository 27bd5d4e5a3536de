"""Batch ingest bodies: JSON, MessagePack and Arrow IPC, chosen by ``Content-Type``.

All three end as the same list of flat records, so a batch stores the same records (and the
same de-duplication hashes) whatever format carried it:

- ``application/json`` (also when no type is given): ``{"records": [{...}, ...]}``;
- ``application/msgpack``: the same envelope as a MessagePack map (the SDK's default: smaller
  and faster to decode than JSON);
- ``application/vnd.apache.arrow.stream``: one Arrow IPC stream, one column per field. A null
  means the field is absent from that record (Arrow has no other way to say so); a ``ts``
  column of Arrow timestamps becomes seconds since the epoch.

Decoding is bounded (``DecodeLimits``): an Arrow stream's record count and decompressed size
are read from its message headers before anything is decompressed (``arrow_bounds``), and a
stream over either limit is refused as ``TooLarge`` (HTTP 413).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import orjson
from pydantic import BaseModel, ValidationError

from hybridai.edge.ingest.arrow_bounds import ArrowBoundsError, measure
from hybridai.protocol.sync import TIMESTAMP

if TYPE_CHECKING:
    import pyarrow as pa

JSON = "application/json"
MSGPACK = "application/msgpack"
ARROW = "application/vnd.apache.arrow.stream"
MEDIA_TYPES: tuple[str, ...] = (JSON, MSGPACK, ARROW)
_ALIASES = {"application/x-msgpack": MSGPACK, "application/vnd.msgpack": MSGPACK}
_ENVELOPE = '{"records": [{...}, ...]}'


class UnsupportedFormat(ValueError):
    """The body's media type is none this edge reads (HTTP 415)."""


class MalformedBody(ValueError):
    """The body does not parse in its declared format (HTTP 400)."""

    def __init__(self, message: str, json_invalid: bool = False) -> None:
        super().__init__(message)
        self.json_invalid = json_invalid


class TooLarge(ValueError):
    """The body would decode to more than this edge takes in one batch (HTTP 413)."""


@dataclass(frozen=True)
class DecodeLimits:
    """The most one batch body may decode to (``max_ingest_records``, ``..._decoded_bytes``)."""

    max_records: int = 1_000_000
    max_decoded_bytes: int = 64 * 2**20


class _Envelope(BaseModel):
    records: list[dict[str, Any]]


def media_type(content_type: str | None) -> str:
    """The media type a ``Content-Type`` header names; JSON when there is none."""
    if not content_type:
        return JSON
    base = content_type.split(";", 1)[0].strip().lower()
    base = _ALIASES.get(base, base)
    if base not in MEDIA_TYPES:
        raise UnsupportedFormat(
            f"Content-Type '{base}' is not an ingest format: send {', '.join(MEDIA_TYPES)}"
        )
    return base


def decode(
    content_type: str | None, body: bytes, limits: DecodeLimits | None = None
) -> list[dict[str, Any]] | pa.Table:
    """The records a batch body carries: a list of records, or a table for Arrow IPC."""
    kind = media_type(content_type)
    limits = limits or DecodeLimits()
    if kind == MSGPACK:
        return _msgpack(body, limits)
    if kind == ARROW:
        return _arrow_table(body, limits)
    # Every record is a JSON object, and every object opens with a brace: counting braces
    # (some may be inside strings) bounds the records before one is built.
    _check_records(body.count(b"{") - 1, limits)
    records = _plain_json(body)
    if records is not None:
        return records
    try:  # the envelope model says exactly what is wrong (or reads what orjson cannot)
        return _Envelope.model_validate_json(body).records
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MalformedBody(
            f"send {_ENVELOPE}: {first['msg']} at {first['loc']}",
            json_invalid=first["type"] == "json_invalid",
        ) from None


def _plain_json(body: bytes) -> list[dict[str, Any]] | None:
    """The records of a well-formed JSON envelope, or None for the envelope model to explain.

    orjson parses in about a quarter of the model's time; anything it refuses or that is not
    a list of objects under ``records`` (integers beyond 64 bits, a wrong shape) goes to
    ``_Envelope``, which keeps the answer exactly what it was.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    records = data.get("records") if type(data) is dict else None
    if type(records) is not list or not set(map(type, records)) <= {dict}:
        return None
    return records


def _check_records(count: int, limits: DecodeLimits) -> None:
    if count > limits.max_records:
        message = f"the body holds more than {limits.max_records} records: split it"
        raise TooLarge(message + " into smaller batches")


def _msgpack(body: bytes, limits: DecodeLimits) -> list[dict[str, Any]]:
    try:
        bound = limits.max_records
        data = msgpack.unpackb(body, raw=False, max_array_len=bound, max_map_len=bound)
    except ValueError as exc:
        if "exceeds max_" in str(exc):  # an array or map longer than the limit, unbuilt
            _check_records(bound + 1, limits)
        raise MalformedBody(f"the body is not valid MessagePack: {exc}") from None
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedBody(f"the body is not valid MessagePack: {exc}") from None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise MalformedBody(f"send the MessagePack map {_ENVELOPE}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise MalformedBody(f"records[{index}] must be a map (one record), got a {kind}")
    return records


def _check_extent(body: bytes, limits: DecodeLimits) -> None:
    """Refuse a stream over the limits from its headers, before it is decompressed."""
    import pyarrow as pa

    try:
        extent = measure(body)
    except (ArrowBoundsError, pa.ArrowInvalid, OSError) as exc:
        raise MalformedBody(f"the body is not a valid Arrow IPC stream: {exc}") from None
    if max(extent.rows, extent.longest_node) > limits.max_records:
        raise TooLarge(
            f"the Arrow stream holds more than {limits.max_records} records (or values of one "
            "field): split it into smaller batches"
        )
    if extent.decoded_bytes > limits.max_decoded_bytes:
        raise TooLarge(
            f"the Arrow stream decodes to {extent.decoded_bytes} bytes, more than the "
            f"{limits.max_decoded_bytes} this edge takes in one batch: split it into smaller "
            "batches"
        )


def _arrow_table(body: bytes, limits: DecodeLimits) -> pa.Table:
    import pyarrow as pa

    _check_extent(body, limits)
    try:
        table = pa.ipc.open_stream(pa.BufferReader(body)).read_all()
        # Reading checks the framing only: a string column of invalid UTF-8 or offsets past
        # their buffer would fail (or worse) only when converted below.
        table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise MalformedBody(f"the body is not a valid Arrow IPC stream: {exc}") from None
    if TIMESTAMP in table.column_names and pa.types.is_timestamp(
        table.schema.field(TIMESTAMP).type
    ):
        table = _ts_as_seconds(table)
    return table


def _ts_as_seconds(table: pa.Table) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(TIMESTAMP)
    unit = column.type.unit
    per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    ticks = pc.cast(column, pa.int64())
    seconds = pc.divide(pc.cast(ticks, pa.float64()), per_second)
    index = table.column_names.index(TIMESTAMP)
    return table.set_column(index, TIMESTAMP, seconds)


def encode_msgpack(records: list[dict[str, Any]]) -> bytes:
    """A MessagePack batch body (what the SDK sends)."""
    body: bytes = msgpack.packb({"records": records}, use_bin_type=True)
    return body


def encode_arrow(records: list[dict[str, Any]]) -> bytes:
    """An Arrow IPC stream body holding ``records`` (for clients and tests)."""
    import pyarrow as pa

    table = pa.Table.from_pylist(records)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
