"""What the edge store holds: records as producers send them, and as it hands them back.

``prepare`` is the rule every ingest path shares (HTTP, SDK, MQTT): a record is a flat JSON
object with a finite ``ts`` (seconds since the epoch) and no field the lake reserves. The store
applies it to whole columns (``columns``) and falls back to it, record by record, to say which
record is wrong and why.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hybridai.protocol.policy import STREAM_PATTERN
from hybridai.protocol.sync import DATE, DEVICE_ID, RECORD_ID, SITE, TIMESTAMP

RESERVED_FIELDS = frozenset({RECORD_ID, DEVICE_ID, SITE, DATE})
_STREAM_RE = re.compile(STREAM_PATTERN)


class InvalidRecord(ValueError):
    """A record the store refuses; the message names the record's index and the problem."""


@dataclass(frozen=True)
class AppendResult:
    accepted: int
    duplicates: int
    compressed: int = 0  # of the accepted: earlier points now compressed away (see compression)
    evicted: int = 0  # records evicted to keep the store under its disk quota


@dataclass(frozen=True)
class StoredRecord:
    """A stored record: ``payload`` holds its own fields, ``ts`` excluded."""

    local_id: int
    ts: float
    payload: dict[str, Any]


def check_stream(stream: str) -> None:
    if not isinstance(stream, str) or not _STREAM_RE.fullmatch(stream):
        raise ValueError(f"stream name {stream!r} must match {STREAM_PATTERN}")


def prepare(index: int, record: Any) -> tuple[float, str, bytes]:
    """Validate one record; return its ts, its payload JSON (ts excluded), its canonical JSON."""

    def bad(problem: str) -> InvalidRecord:
        return InvalidRecord(f"record {index}: {problem}")

    if not isinstance(record, dict):
        raise bad(f"must be a JSON object, got {type(record).__name__}")
    ts = record.get(TIMESTAMP)
    if TIMESTAMP not in record:
        raise bad(f"missing '{TIMESTAMP}' (seconds since the epoch)")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise bad(f"'{TIMESTAMP}' must be a finite number of seconds, got {type(ts).__name__}")
    try:
        datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise bad(f"'{TIMESTAMP}' is out of range for a date") from None
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str) or not key:
            raise bad(f"field names must be non-empty strings, got {key!r}")
        if key in RESERVED_FIELDS:
            raise bad(f"field '{key}' is reserved for the lake; rename it")
        if isinstance(value, dict | list | tuple):
            raise bad(f"field '{key}' is nested; records must be flat")
        if value is not None and not isinstance(value, str | int | float):
            raise bad(f"field '{key}' has unsupported type {type(value).__name__}")
        if key != TIMESTAMP:
            fields[key] = value
    ts = float(ts)
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    canonical = json.dumps(
        {**fields, TIMESTAMP: ts}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    try:
        return ts, payload, canonical.encode()
    except UnicodeEncodeError:
        raise bad("holds a string that is not valid Unicode") from None
