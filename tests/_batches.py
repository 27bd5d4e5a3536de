"""An edge batch read back exactly as the cloud's sync route reads it (bounded, decimals restored).

Tests of the edge's encoding check it against the real reader, not a twin of it.
"""

from __future__ import annotations

import pyarrow as pa

from hybridai.cloud.data.parquet_bounds import BatchLimits, read_batch
from hybridai.protocol import wire_decimals


def as_the_cloud_reads(body: bytes) -> pa.Table:
    return wire_decimals.restore(read_batch(body, BatchLimits()))
