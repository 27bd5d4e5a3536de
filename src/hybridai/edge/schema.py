"""Per-stream record schemas: declared in settings, or inferred from the first batch, enforced.

A stream's schema names its fields with a type (``string``, ``number``, ``integer``,
``boolean``), which of them every record must carry (present and not null), and whether it is
*closed* (a field it does not name is refused). The timestamp ``ts`` is checked by the store
itself and never appears here.

Declared schemas (``HYBRIDAI_EDGE_STREAM_SCHEMAS``) are enforced as written. A stream without
one gets its schema from the first batch it accepts: every field seen with its type, none
required, open to new fields. Later batches must agree with it: a field that changes type is
refused (it would also break the lake column); a field seen for the first time joins the schema
with its type (the lake gains the column too), after which its type is enforced as well.
Inferred schemas are kept in the store's metadata, so they survive restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from hybridai.protocol.sync import TIMESTAMP

FieldType = Literal["string", "number", "integer", "boolean"]
META_PREFIX = "schema:"


class StreamSchema(BaseModel):
    """The shape every record of one stream must have."""

    fields: dict[str, FieldType] = Field(description="Field name -> type (ts excluded).")
    required: list[str] = Field(
        default_factory=list, description="Fields every record carries, not null."
    )
    closed: bool = Field(default=False, description="Refuse fields not named in ``fields``.")
    inferred: bool = Field(default=False, description="Learnt from the first accepted batch.")


class SchemaViolation(ValueError):
    """A record does not fit its stream's schema; nothing of its batch was stored."""


class MetaStore(Protocol):
    """What the registry needs from the store (``EdgeStore`` has it)."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


def type_of(value: Any) -> FieldType | None:
    """The schema type of a JSON value; None for null or a type the store refuses anyway."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


# Exact types, so that a bool (an int subclass in Python) never passes for a number.
_ALLOWED: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "number": frozenset({int, float}),
    "integer": frozenset({int}),
    "boolean": frozenset({bool}),
}


def infer(records: list[Any]) -> StreamSchema:
    """The schema the first accepted batch of a stream implies: its fields' types.

    No field is inferred required: one batch cannot tell a sensor's optional reading from a
    mandatory one, and guessing wrong would refuse good data forever. Declare ``required``
    (and ``closed``) where that matters.
    """
    fields: dict[str, FieldType] = {}
    for record in records:
        if not isinstance(record, dict):
            continue
        for key, value in record.items():
            kind = type_of(value)
            if key != TIMESTAMP and kind is not None:
                fields.setdefault(key, kind)
    return StreamSchema(fields=fields, inferred=True)


def check(stream: str, schema: StreamSchema, records: list[Any]) -> StreamSchema | None:
    """Refuse the batch if any record does not fit; return the grown schema, if it grew.

    Records that are not objects are left to the store, which refuses them with its own reason.
    """
    fields = dict(schema.fields)
    allowed = {name: _ALLOWED[kind] for name, kind in fields.items()}
    required = schema.required
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            continue
        for name in required:
            if record.get(name) is None:
                raise SchemaViolation(
                    f"record {index}: missing required field '{name}' (stream '{stream}' "
                    f"requires {', '.join(required)})"
                )
        for key, value in record.items():
            types = allowed.get(key)
            if types is not None:
                if type(value) not in types and value is not None:
                    raise SchemaViolation(
                        f"record {index}: field '{key}' must be {_article(fields[key])}, got "
                        f"{type(value).__name__} {value!r:.40}"
                    )
                continue
            if key == TIMESTAMP or value is None:
                continue
            if schema.closed:
                raise SchemaViolation(
                    f"record {index}: unknown field '{key}': the schema of stream "
                    f"'{stream}' is closed (fields: {', '.join(sorted(fields))})"
                )
            kind = type_of(value)
            if kind is not None:
                fields[key] = kind
                allowed[key] = _ALLOWED[kind]
    if fields == schema.fields:
        return None
    return schema.model_copy(update={"fields": fields})


def _article(kind: FieldType) -> str:
    return f"an {kind}" if kind == "integer" else f"a {kind}"


class SchemaRegistry:
    """Declared schemas first, then the inferred ones kept in the store's metadata."""

    def __init__(self, store: MetaStore, declared: Mapping[str, StreamSchema]) -> None:
        self._store = store
        self._declared = dict(declared)
        self._cache: dict[str, StreamSchema] = {}
        self._lock = threading.Lock()

    def get(self, stream: str) -> StreamSchema | None:
        if stream in self._declared:
            return self._declared[stream]
        with self._lock:
            if stream not in self._cache:
                raw = self._store.get_meta(META_PREFIX + stream)
                if raw is None:
                    return None
                self._cache[stream] = StreamSchema.model_validate_json(raw)
            return self._cache[stream]

    def admit(self, stream: str, records: list[Any]) -> StreamSchema | None:
        """Check a batch; return the schema to save once the batch is stored (None: no change)."""
        schema = self.get(stream)
        if schema is None:
            if not records:
                return None
            learnt = infer(records)
            return check(stream, learnt, records) or learnt  # one batch must agree with itself
        return check(stream, schema, records)

    def save(self, stream: str, schema: StreamSchema) -> None:
        """Keep an inferred (or grown) schema; declared ones live in the settings."""
        if stream in self._declared:
            return
        with self._lock:
            self._store.set_meta(META_PREFIX + stream, schema.model_dump_json())
            self._cache[stream] = schema
