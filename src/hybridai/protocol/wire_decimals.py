"""Float columns that are really decimals travel as Parquet decimals (scaled int64), exactly.

Sensor readings are mostly decimals with a few digits (``61.5023``); as float64 their bits
barely compress, as integers of ten-thousandths they delta-encode to a couple of bytes each.
The edge sends a float column as ``DECIMAL(18, k)`` stored in int64 only when every value is
``n / 10**k`` for an integer ``n`` below 2**53, checked by doing the cloud's conversion and
comparing bit for bit. The cloud turns every decimal column back into float64 the same way
(the integer ``n`` divided by ``10**k`` in IEEE arithmetic, which is correctly rounded), so the
lake's types never change and the float the cloud stores is the float the sensor sent. The
Parquet type says all this by itself: no side metadata travels with a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

MAX_DIGITS = 6
PRECISION = 18
_LIMIT = float(2**53)


def scaled(column: pa.ChunkedArray | pa.Array) -> pa.Array | None:
    """The column as ``decimal128(18, k)`` when that is exact, else None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = column.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    if not len(values) or not np.isfinite(values).all():
        return None
    for k in range(MAX_DIGITS + 1):
        factor = 10.0**k
        ints = np.round(values * factor)
        if np.abs(ints).max() >= _LIMIT:
            return None
        if np.array_equal(ints / factor, values):
            decimals = pc.cast(column, pa.decimal128(PRECISION, k))
            sent = column.to_numpy(zero_copy_only=False).astype(np.float64)
            if np.array_equal(_floats(decimals), sent, equal_nan=True):
                return decimals
            return None
    return None


def _floats(decimals: pa.Array) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Decimal values as float64: their unscaled integers divided by ``10**scale``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    scale = decimals.type.scale
    unit = pa.scalar(10**scale, pa.decimal128(PRECISION, 0))
    ints = pc.cast(pc.multiply(decimals, unit), pa.int64())
    out = ints.to_numpy(zero_copy_only=False).astype(np.float64) / 10.0**scale
    if decimals.null_count:
        out[np.asarray(decimals.is_null().to_numpy(zero_copy_only=False))] = np.nan
    return np.asarray(out, dtype=np.float64)


def restore(table: pa.Table) -> pa.Table:
    """Decimal columns back to the float64 they were (a table without any is returned as is)."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if not pa.types.is_decimal(field.type):
            continue
        column = table.column(index).combine_chunks()
        mask = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
        floats = pa.array(_floats(column), type=pa.float64(), mask=mask)
        table = table.set_column(index, pa.field(field.name, pa.float64()), floats)
    return table
