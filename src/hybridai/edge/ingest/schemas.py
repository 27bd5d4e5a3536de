"""Per-stream record schemas: declared (cloud, settings) or inferred from the first batch.

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

The cloud can declare a stream's schema too, in the desired state (``declare``): it takes
precedence over the settings and is merged onto what the edge enforces already. Fields the
declaration does not name keep their type (unless it is closed), new fields join, and a field
whose type the declaration would change is refused (``SchemaConflict``) while the old schema
stays in force: records already stored, and the lake column, have the old type. A cloud schema
is kept in the store's metadata like an inferred one, grows the same way, and when the cloud
withdraws it the stream keeps its field types but nothing more (as if inferred).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from pydantic import Field

from hybridai.protocol.streams import FieldType, SchemaSpec, conflicts
from hybridai.protocol.sync import TIMESTAMP

META_PREFIX = "schema:"
CLOUD_STREAMS_KEY = "schemas-from-cloud"  # the streams whose schema the cloud declared


class StreamSchema(SchemaSpec):
    """The shape every record of one stream must have."""

    inferred: bool = Field(default=False, description="Learnt from the first accepted batch.")
    from_cloud: bool = Field(
        default=False, description="Declared in the cloud's desired state (then kept here)."
    )


class SchemaViolation(ValueError):
    """A record does not fit its stream's schema; nothing of its batch was stored."""


class SchemaConflict(ValueError):
    """A declared schema would change the type of a field the stream has; not applied."""


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
                        f"{_article_of(value)}"
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


def _article_of(value: object) -> str:
    """What a value is, in schema words, never the value: errors reach logs and dead letters."""
    found = type_of(value)
    return _article(found) if found is not None else f"a {type(value).__name__}"


def merge(stream: str, current: StreamSchema | None, declared: SchemaSpec) -> StreamSchema:
    """The schema to enforce once ``declared`` (the cloud's) meets ``current`` (the edge's).

    Declared fields win, with their required/closed rules; fields only the edge knew keep
    their type unless the declaration is closed. Raises ``SchemaConflict`` when the declaration
    changes the type of a field the stream already has (see ``protocol.streams.conflicts``).
    """
    known = dict(current.fields) if current is not None else {}
    problems = conflicts(known, declared.fields)
    if problems:
        raise SchemaConflict(
            f"declared schema for stream '{stream}' refused: {'; '.join(problems)}. Records "
            "already stored (and the lake column) have the old type: keep it, or declare the "
            "values under a new field or stream. The previous schema stays in force."
        )
    fields = dict(declared.fields) if declared.closed else {**known, **declared.fields}
    return StreamSchema(
        fields=fields,
        required=list(declared.required),
        closed=declared.closed,
        from_cloud=True,
    )


class SchemaRegistry:
    """Cloud-declared schemas first, then those in the settings, then the inferred ones.

    Cloud-declared and inferred schemas live in the store's metadata. Callers serialise
    ``admit``/``save`` against ``declare``/``withdraw`` (``Ingest`` holds one lock for both).
    """

    def __init__(self, store: MetaStore, declared: Mapping[str, StreamSchema]) -> None:
        self._store = store
        self._declared = dict(declared)
        self._cache: dict[str, StreamSchema | None] = {}
        self._lock = threading.Lock()

    def _stored(self, stream: str) -> StreamSchema | None:
        with self._lock:
            if stream not in self._cache:
                raw = self._store.get_meta(META_PREFIX + stream)
                self._cache[stream] = None if raw is None else StreamSchema.model_validate_json(raw)
            return self._cache[stream]

    def _put(self, stream: str, schema: StreamSchema) -> None:
        with self._lock:
            self._store.set_meta(META_PREFIX + stream, schema.model_dump_json())
            self._cache[stream] = schema

    def get(self, stream: str) -> StreamSchema | None:
        stored = self._stored(stream)
        if stored is not None and stored.from_cloud:
            return stored
        return self._declared.get(stream, stored)

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
        if stream in self._declared and not schema.from_cloud:
            return
        self._put(stream, schema)

    def forget(self, streams: Iterable[str]) -> None:
        """Read these streams' schemas from the store again (a save was rolled back)."""
        with self._lock:
            for stream in streams:
                self._cache.pop(stream, None)

    def cloud_streams(self) -> list[str]:
        raw = self._store.get_meta(CLOUD_STREAMS_KEY)
        return sorted(json.loads(raw)) if raw else []

    def declare(self, stream: str, spec: SchemaSpec) -> StreamSchema:
        """Enforce the cloud's ``spec`` for ``stream`` from now on (merged, see ``merge``).

        Raises ``SchemaConflict`` and changes nothing when it would retype a field.
        """
        current = self.get(stream)
        merged = merge(stream, current, spec)
        if merged != current:
            self._put(stream, merged)
        streams = self.cloud_streams()
        if stream not in streams:
            self._store.set_meta(CLOUD_STREAMS_KEY, json.dumps(sorted([*streams, stream])))
        return merged

    def withdraw(self, keep: Iterable[str]) -> list[str]:
        """Stop enforcing cloud schemas the cloud no longer declares (streams not in ``keep``).

        Such a stream keeps its field types (its records and lake column have them) but
        requires and closes nothing, as if inferred; a schema in the settings applies again.
        """
        kept = set(keep)
        withdrawn = [s for s in self.cloud_streams() if s not in kept]
        for stream in withdrawn:
            stored = self._stored(stream)
            if stored is not None and stored.from_cloud:
                self._put(stream, StreamSchema(fields=stored.fields, inferred=True))
        if withdrawn:
            remaining = [s for s in self.cloud_streams() if s in kept]
            self._store.set_meta(CLOUD_STREAMS_KEY, json.dumps(remaining))
        return withdrawn
