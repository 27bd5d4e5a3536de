"""Float columns that are really decimals travel as scaled integers, exactly.

Sensor readings are mostly decimals with a few digits (``61.5023``); as float64 their bits
barely compress, as integers of ten-thousandths they delta-encode to a couple of bytes each.
The edge sends a float column as int64 ``round(x * 10**k)`` only when dividing back gives every
value bit for bit (IEEE division of two exact numbers is correctly rounded, so the float the
cloud gets is the float the sensor sent); the field's metadata carries ``k``. The cloud turns
such columns back into float64 before the lake sees them, so the lake's types never change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SCALE = b"hybridai.decimal_scale"
MAX_DIGITS = 6
_LIMIT = float(2**53)


def scaled(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, int] | None:
    """``(int64 column, k)`` when every value is a decimal with at most ``MAX_DIGITS`` digits."""
    mask = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    values = column.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    if not len(values) or not np.isfinite(values).all():
        return None
    for k in range(MAX_DIGITS + 1):
        factor = 10.0**k
        ints = np.round(values * factor)
        if np.abs(ints).max() >= _LIMIT:
            return None
        if np.array_equal(ints / factor, values):
            return pa.array(ints.astype(np.int64), type=pa.int64(), mask=mask), k
    return None


def restore(table: pa.Table) -> pa.Table:
    """Scaled columns back to the float64 they were (a table without any is returned as is)."""
    for index, field in enumerate(table.schema):
        if not field.metadata or SCALE not in field.metadata:
            continue
        factor = 10.0 ** int(field.metadata[SCALE])
        floats: Any = pc.divide(pc.cast(table.column(index), pa.float64()), factor)
        table = table.set_column(index, pa.field(field.name, pa.float64()), floats)
    return table
