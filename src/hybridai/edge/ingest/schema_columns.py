"""Stream schemas checked against whole columns, the way the store now takes records.

The rules are ``schema``'s: a column's Arrow type says at once whether every value of a field
has the declared type, so a conforming batch costs a few comparisons per field, not a loop per
record. When a column does not conform (or mixes types), the batch is checked record by record
with ``schema.check``, which names the first record that breaks the schema and how.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from hybridai.edge.ingest.schemas import SchemaRegistry, SchemaViolation, StreamSchema, check
from hybridai.edge.store.columns import JSON_TEXT, to_rows
from hybridai.protocol.streams import FieldType
from hybridai.protocol.sync import TIMESTAMP

if TYPE_CHECKING:
    import pyarrow as pa


@cache
def _compatible() -> dict[str, tuple[pa.DataType, ...]]:
    """The Arrow types whose every value has a declared field type."""
    import pyarrow as pa

    return {
        "string": (pa.string(),),
        "number": (pa.int64(), pa.float64()),
        "integer": (pa.int64(),),
        "boolean": (pa.bool_(),),
    }


def _kind(field: pa.Field) -> FieldType | None:
    """The schema type every value of a column has, or None when no single one does."""
    import pyarrow as pa

    if field.metadata == JSON_TEXT:
        return None
    if pa.types.is_string(field.type):
        return "string"
    if pa.types.is_boolean(field.type):
        return "boolean"
    if pa.types.is_int64(field.type) or pa.types.is_float64(field.type):
        return "number"
    return None


def _present(table: pa.Table) -> list[pa.Field]:
    """The fields (``ts`` apart) with at least one value."""
    return [
        f
        for f in table.schema
        if f.name != TIMESTAMP and table.column(f.name).null_count < table.num_rows
    ]


def _records(table: pa.Table) -> list[Any]:
    return [{**fields, TIMESTAMP: ts} for ts, fields in to_rows(table)]


def check_table(
    stream: str, schema: StreamSchema, table: pa.Table, records: Sequence[Any] | None = None
) -> StreamSchema | None:
    """``schema.check`` for a table: refuse it or return the grown schema, if it grew.

    ``records``: what the table was made of, if it was (errors then quote them as sent).
    """

    def by_record() -> StreamSchema | None:
        return check(stream, schema, list(records) if records is not None else _records(table))

    fields = dict(schema.fields)
    present = {f.name: f for f in _present(table)}
    for name in schema.required:
        if name not in present or table.column(name).null_count:
            return by_record()
    for name, field in present.items():
        declared = fields.get(name)
        if declared is None:
            kind = _kind(field)
            if schema.closed or kind is None:
                return by_record()
            fields[name] = kind
        elif field.metadata == JSON_TEXT or field.type not in _compatible()[declared]:
            return by_record()
    if fields == schema.fields:
        return None
    return schema.model_copy(update={"fields": fields})


def infer_table(table: pa.Table) -> StreamSchema | None:
    """The schema a first batch implies, or None when a field mixes types (check by record)."""
    fields: dict[str, FieldType] = {}
    for field in _present(table):
        kind = _kind(field)
        if kind is None:
            return None
        fields[field.name] = kind
    return StreamSchema(fields=fields, inferred=True)


def admit_table(
    registry: SchemaRegistry,
    stream: str,
    table: pa.Table,
    records: Sequence[Any] | None = None,
) -> StreamSchema | None:
    """``SchemaRegistry.admit`` for a table: the schema to save once it is stored, if any."""
    schema = registry.get(stream)
    if schema is not None:
        return check_table(stream, schema, table, records)
    if not table.num_rows:
        return None
    learnt = infer_table(table)
    if learnt is None:
        return registry.admit(stream, list(records) if records is not None else _records(table))
    return check_table(stream, learnt, table, records) or learnt


__all__ = ["SchemaViolation", "admit_table", "check_table", "infer_table"]
