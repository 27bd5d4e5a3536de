"""Records as columns: the one form the store keeps, hashes and sends.

A batch of records becomes one Arrow table (``ts`` as float64 first, then the fields by name)
with the checks of ``records.prepare`` done per column instead of per record: that is what
lets the store take a batch at the cost of a few array operations rather than a Python loop
per record. When a column does not convert cleanly (a nested value, a string that is not valid
Unicode, a field mixing types) the batch is checked record by record with ``prepare``, so an
error names the record and its problem exactly as before; a batch that passes those checks but
mixes types in a field keeps that field as JSON text (marked in the field's metadata), so its
values read back exactly.

Null and absent are the same thing in a column: a record read back has no key for a null.

Row hashes (for de-duplication) are 64-bit, computed column by column with numpy from the
values' canonical forms: a number hashes as the float64 it equals (so ``5`` and ``5.0`` are
one value, as in JSON), except integers beyond 2**53, which hash by their own bits; a string
by a keyed BLAKE2b of its UTF-8; a null not at all (so null and absent agree). Column names
and the stream are mixed in, so ``{"a": 1}`` and ``{"b": 1}`` differ. With a store key, the
seed is derived from it (``store_crypto``). Two different records collide with probability
about n**2 / 2**65 for n records held, about 3e-6 for ten million.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridai.edge.store.records import RESERVED_FIELDS, InvalidRecord, prepare
from hybridai.protocol.sync import TIMESTAMP

if TYPE_CHECKING:
    import pyarrow as pa

JSON_TEXT = {b"hybridai": b"json"}  # field metadata: values are JSON text of mixed types
_MIN_TS, _MAX_TS = -62135596800.0, 253402300799.0  # what a date can hold (years 1..9999)
_EXACT = float(2**53)


def _kind_kept(kind: pa.DataType) -> bool:
    """Booleans, 64-bit integers and floats, strings: the column types kept as they come."""
    import pyarrow as pa

    types = pa.types
    return bool(
        types.is_boolean(kind)
        or types.is_int64(kind)
        or types.is_float64(kind)
        or types.is_string(kind)
    )


U64 = np.dtype(np.uint64)


def empty() -> pa.Table:
    import pyarrow as pa

    return pa.table({TIMESTAMP: pa.array([], type=pa.float64())})


def _first_invalid(records: Sequence[Any]) -> InvalidRecord | None:
    for index, record in enumerate(records):
        try:
            prepare(index, record)
        except InvalidRecord as exc:
            return exc
    return None


def _precise_error(records: Sequence[Any], fallback: str) -> InvalidRecord:
    return _first_invalid(records) or InvalidRecord(fallback)


def _json_column(values: list[Any]) -> tuple[pa.Field, pa.Array]:
    import pyarrow as pa

    text = [
        None if v is None else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        for v in values
    ]
    return pa.field("", pa.string(), metadata=JSON_TEXT), pa.array(text, type=pa.string())


def from_records(records: Sequence[Any]) -> pa.Table:
    """The records as one table, or InvalidRecord naming the first record that is wrong."""
    import pyarrow as pa

    if not records:
        return empty()
    if set(map(type, records)) != {dict}:  # map and set: no Python frame per record
        raise _precise_error(records, "records must be JSON objects")
    names: set[Any] = set().union(*records)
    if (
        TIMESTAMP not in names
        or names & RESERVED_FIELDS
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise _precise_error(records, "a record has a missing, empty or reserved field name")
    fields: list[pa.Field] = []
    arrays: list[pa.Array] = []
    for name in [TIMESTAMP, *sorted(names - {TIMESTAMP})]:
        values = list(map(dict.get, records, repeat(name)))
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeError):
            array = None
        if array is not None and _numeric(array.type) and bool in set(map(type, values)):
            array = None  # Arrow would read True as 1: a field mixing booleans and numbers
        if array is None or not (pa.types.is_null(array.type) or _kind_kept(array.type)):
            error = _first_invalid(records)
            if error is not None:
                raise error
            if array is not None or name == TIMESTAMP or not _scalars(values):
                raise InvalidRecord(f"field '{name}' holds values the store cannot keep")
            if all(v is None or v.__class__ in (int, float) for v in values):
                floats = [None if v is None else float(v) for v in values]
                array = pa.array(floats, type=pa.float64())  # ints beyond int64: as floats
            else:
                field, array = _json_column(values)  # mixing types: every record is valid
                fields.append(field.with_name(name))
                arrays.append(array)
                continue
        fields.append(pa.field(name, array.type))
        arrays.append(array)
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return _checked_ts(table, records)


def _numeric(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _keepable(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_null(kind) or _kind_kept(kind)


def _scalars(values: list[Any]) -> bool:
    """Whether every value is a flat scalar, valid Unicode included (prepare said so)."""
    return all(v is None or isinstance(v, str | int | float) for v in values)


def _checked_ts(table: pa.Table, records: Sequence[Any] | None) -> pa.Table:
    import pyarrow as pa

    ts = table.column(TIMESTAMP)
    if not (pa.types.is_floating(ts.type) or pa.types.is_integer(ts.type)):
        raise _error_at(records, None, f"'{TIMESTAMP}' must be a number of seconds")
    if pa.types.is_boolean(ts.type):
        raise _error_at(records, None, f"'{TIMESTAMP}' must be a number of seconds")
    values = ts.cast(pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (values >= _MIN_TS) & (values <= _MAX_TS))
    if ts.null_count or bad.any():
        nulls = np.asarray(ts.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        first = int(np.flatnonzero(bad | nulls)[0])
        raise _error_at(records, first, f"'{TIMESTAMP}' must be a finite number of seconds")
    index = table.schema.get_field_index(TIMESTAMP)
    return table.set_column(index, TIMESTAMP, pa.array(values, type=pa.float64()))


def _error_at(records: Sequence[Any] | None, index: int | None, problem: str) -> InvalidRecord:
    if records is not None:
        return _precise_error(records, problem if index is None else f"record {index}: {problem}")
    return InvalidRecord(problem if index is None else f"record {index}: {problem}")


def from_arrow(table: pa.Table) -> pa.Table:
    """Check a table a producer sent (Arrow IPC) the way ``from_records`` checks records."""
    import pyarrow as pa

    if TIMESTAMP not in table.column_names:
        raise InvalidRecord(f"record 0: missing '{TIMESTAMP}' (seconds since the epoch)")
    names = table.column_names
    if len(set(names)) != len(names) or not all(names):
        raise InvalidRecord("column names must be unique and non-empty")
    reserved = sorted(set(names) & RESERVED_FIELDS)
    if reserved:
        raise InvalidRecord(f"record 0: field '{reserved[0]}' is reserved for the lake; rename it")
    fields: list[pa.Field] = []
    arrays: list[Any] = []
    for name in [TIMESTAMP, *sorted(set(names) - {TIMESTAMP})]:
        column = table.column(name)
        kind = column.type
        if pa.types.is_integer(kind) and not pa.types.is_int64(kind):
            column, kind = column.cast(pa.int64()), pa.int64()
        elif pa.types.is_floating(kind) and not pa.types.is_float64(kind):
            column, kind = column.cast(pa.float64()), pa.float64()
        elif pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            column, kind = column.cast(pa.string()), pa.string()
        if not _keepable(kind):
            raise InvalidRecord(
                f"record 0: field '{name}' has unsupported type {kind}; records must be flat "
                "numbers, strings or booleans"
            )
        fields.append(pa.field(name, kind))
        arrays.append(column)
    return _checked_ts(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), None)


def values_of(field: pa.Field, column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's values as Python objects, JSON text decoded."""
    values: list[Any] = column.to_pylist()
    if field.metadata == JSON_TEXT:
        return [None if v is None else json.loads(v) for v in values]
    return values


def to_rows(table: pa.Table) -> list[tuple[float, dict[str, Any]]]:
    """``(ts, fields)`` per row; a null field is left out."""
    columns = [
        (field.name, values_of(field, table.column(field.name)))
        for field in table.schema
        if field.name != TIMESTAMP
    ]
    stamps = table.column(TIMESTAMP).to_pylist()
    return [
        (ts, {name: values[i] for name, values in columns if values[i] is not None})
        for i, ts in enumerate(stamps)
    ]


def _fmix(h: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """MurmurHash3's 64-bit finaliser: every input bit reaches every output bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _seed(key: bytes, text: str) -> np.uint64:
    digest = hashlib.blake2b(text.encode(), digest_size=8, key=key).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _value_bits(
    field: pa.Field, column: pa.ChunkedArray, key: bytes
) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """A 64-bit code per value (anything for a null: the caller masks nulls out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if field.metadata == JSON_TEXT:
        return _mixed_bits(values_of(field, column), key)
    if pa.types.is_string(kind):
        encoded = pc.dictionary_encode(column.combine_chunks().fill_null(""))
        words = [
            hashlib.blake2b(s.encode(), digest_size=8, key=key).digest()
            for s in encoded.dictionary.to_pylist()
        ]
        codes = np.frombuffer(b"".join(words), dtype=U64) ^ np.uint64(2)
        return np.asarray(codes[encoded.indices.to_numpy(zero_copy_only=False)], dtype=U64)
    if pa.types.is_boolean(kind):
        flags = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint64)
        return np.asarray(flags + np.uint64(0x9E3779B97F4A7C15), dtype=U64)
    if pa.types.is_int64(kind):
        ints = column.fill_null(0).to_numpy(zero_copy_only=False)
        floats = ints.astype(np.float64)
        exact = np.abs(floats) <= _EXACT
        bits = np.where(exact, (floats + 0.0).view(U64), ints.view(U64) ^ np.uint64(1))
        return np.asarray(bits, dtype=U64)
    if pa.types.is_float64(kind):
        floats = column.fill_null(0.0).to_numpy(zero_copy_only=False) + 0.0  # -0.0 -> 0.0
        return np.ascontiguousarray(floats).view(U64)
    return np.zeros(len(column), dtype=U64)  # an all-null column: masked out entirely


def _mixed_bits(values: list[Any], key: bytes) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Per value, the code its own column type would give it (a field mixing types)."""
    import pyarrow as pa

    codes: list[np.ndarray[Any, np.dtype[np.uint64]]] = []
    for value in values:
        one = pa.chunked_array([pa.array([value])])
        plain = pa.field("", one.type)
        codes.append(np.zeros(1, dtype=U64) if value is None else _value_bits(plain, one, key))
    return np.concatenate(codes) if codes else np.zeros(0, dtype=U64)


def row_hashes(
    stream: str, table: pa.Table, key: bytes = b""
) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """One 64-bit content hash per row: the same record hashes the same in any batch."""
    h = np.full(table.num_rows, _seed(key, stream), dtype=U64)
    for field in sorted(table.schema, key=lambda f: f.name):
        column = table.column(field.name)
        if column.null_count == len(column):
            continue
        mixed = _fmix(_value_bits(field, column, key) ^ _seed(key, field.name))
        step = _fmix(h ^ mixed)
        if column.null_count:
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            step = np.where(valid, step, h)
        h = step
    return h


def unify(tables: Sequence[pa.Table]) -> pa.Table:
    """Chunks of one stream as one table, whatever types their fields had.

    A field's types are widened (int to float) or, when they conflict, the field is kept as
    JSON text, so that any mix of chunks can be sent.
    """
    import pyarrow as pa

    if not tables:
        return empty()
    if len(tables) == 1:
        return tables[0]
    kinds: dict[str, set[tuple[pa.DataType, bool]]] = {}
    for table in tables:
        for field in table.schema:
            entry = kinds.setdefault(field.name, set())
            if not pa.types.is_null(field.type):
                entry.add((field.type, field.metadata == JSON_TEXT))
    targets: dict[str, pa.Field] = {}
    for name, seen in kinds.items():
        types = {kind for kind, _ in seen}
        if not seen:
            targets[name] = pa.field(name, pa.null())
        elif len(seen) == 1:
            kind, as_json = next(iter(seen))
            targets[name] = pa.field(name, kind, metadata=JSON_TEXT if as_json else None)
        elif types == {pa.int64(), pa.float64()} and not any(j for _, j in seen):
            targets[name] = pa.field(name, pa.float64())
        else:
            targets[name] = pa.field(name, pa.string(), metadata=JSON_TEXT)
    order = [TIMESTAMP, *sorted(set(targets) - {TIMESTAMP})]
    schema = pa.schema([targets[name] for name in order])
    return pa.concat_tables([_conform(t, schema) for t in tables])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    arrays: list[Any] = []
    for target in schema:
        if target.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, type=target.type))
            continue
        field = table.schema.field(target.name)
        column = table.column(target.name)
        if target.metadata == JSON_TEXT and field.metadata != JSON_TEXT:
            arrays.append(_json_column(values_of(field, column))[1])
        else:
            arrays.append(column.cast(target.type))
    return pa.Table.from_arrays(arrays, schema=schema)
