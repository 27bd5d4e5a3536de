"""Compression inside the store's append transaction: series state in SQLite, tombstones.

A point compressed away becomes a tombstone (see ``store_schema``) in the same transaction that
stores the point which made it redundant, so a crash leaves either both changes or neither.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from hybridai.edge.compression import (
    CompressionSpec,
    deadband,
    dump_state,
    load_state,
    series_key,
    swinging_door,
    to_point,
)
from hybridai.edge.store_schema import COMPRESSED_SEQ, RECORD_OVERHEAD, SIZE_SQL, bump_stream


def _tombstone(conn: sqlite3.Connection, stream: str, local_id: int) -> bool:
    """Empty an unbatched record's payload and retire it; False if it is already batched."""
    row = conn.execute(
        f"SELECT {SIZE_SQL} FROM records WHERE id = ? AND batch_seq IS NULL", (local_id,)
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        "UPDATE records SET payload = '', batch_seq = ?, synced = 1 WHERE id = ?",
        (COMPRESSED_SEQ, local_id),
    )
    bump_stream(conn, stream, bytes=-(int(row[0]) - RECORD_OVERHEAD), compressed=1)
    return True


def compress(
    conn: sqlite3.Connection,
    spec: CompressionSpec,
    stream: str,
    local_id: int,
    ts: float,
    fields: dict[str, Any],
) -> int:
    """Apply ``spec`` to a just-stored record; return how many records it compressed away."""
    key = series_key(spec, fields)
    row = conn.execute(
        "SELECT state FROM series WHERE stream = ? AND key = ?", (stream, key)
    ).fetchone()
    state = load_state(spec, None if row is None else row[0])
    point = to_point(spec, local_id, ts, fields)
    dropped = 0
    if spec.method == "deadband":
        drop, new_state = deadband(spec, state, point)
        dropped = int(drop and _tombstone(conn, stream, local_id))  # fresh: never batched
    else:
        drop_held, if_dropped, if_kept = swinging_door(spec, state, point)
        new_state = if_kept
        if drop_held:
            assert state is not None and state.h is not None
            if _tombstone(conn, stream, state.h.id):
                new_state, dropped = if_dropped, 1
    conn.execute(
        "INSERT INTO series (stream, key, state) VALUES (?, ?, ?) "
        "ON CONFLICT (stream, key) DO UPDATE SET state = excluded.state",
        (stream, key, dump_state(spec, new_state)),
    )
    return dropped
