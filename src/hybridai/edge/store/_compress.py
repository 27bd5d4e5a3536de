"""Compression inside the store's append transaction: series state in SQLite, dropped rows.

A point compressed away is marked dropped in its chunk (see ``chunks``) in the same transaction
that stores the point which made it redundant, so a crash leaves either both changes or
neither. A held point already handed to a sync batch is kept (its chunk cannot change).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np

from hybridai.edge.store._chunks import Chunks, Mask, select
from hybridai.edge.store._sqlite import COMPRESSED_SEQ, bump_stream
from hybridai.edge.store.compression import (
    CompressionSpec,
    SeriesState,
    deadband,
    dump_state,
    load_state,
    series_key,
    swinging_door,
    to_point,
)


def _drop_stored(conn: sqlite3.Connection, store: Chunks, stream: str, record_id: int) -> bool:
    """Mark an earlier, unbatched record dropped; False if it is already in a batch."""
    found = select(
        conn,
        "stream = ? AND batch_seq IS NULL AND first_id <= ? AND first_id + rows > ? "
        "ORDER BY first_id DESC LIMIT 1",
        (stream, record_id, record_id),
    )
    if not found:
        return False
    chunk = found[0]
    freed = store.drop_row(conn, chunk, record_id - chunk.first_id)
    if chunk.live == 1:  # nothing left to send: it never needs a batch
        conn.execute(
            "UPDATE chunks SET batch_seq = ?, synced = 1 WHERE id = ?", (COMPRESSED_SEQ, chunk.id)
        )
    bump_stream(conn, stream, bytes=-freed, records=-1, compressed=1)
    return True


def compress(
    conn: sqlite3.Connection,
    store: Chunks,
    spec: CompressionSpec,
    stream: str,
    first_id: int,
    rows: list[tuple[float, dict[str, Any]]],
) -> tuple[Mask, int]:
    """Apply ``spec`` to records about to be stored as ids ``first_id``...

    Returns which of them are dropped already, and how many earlier stored records were.
    """
    dropped = np.zeros(len(rows), dtype=bool)
    states: dict[str, SeriesState | None] = {}
    earlier = 0
    for offset, (ts, fields) in enumerate(rows):
        key = series_key(spec, fields)
        if key not in states:
            row = conn.execute(
                "SELECT state FROM series WHERE stream = ? AND key = ?", (stream, key)
            ).fetchone()
            states[key] = load_state(spec, None if row is None else row[0])
        state = states[key]
        point = to_point(spec, first_id + offset, ts, fields)
        if spec.method == "deadband":
            drop, states[key] = deadband(spec, state, point)
            dropped[offset] = drop
            continue
        drop_held, if_dropped, if_kept = swinging_door(spec, state, point)
        states[key] = if_kept
        if drop_held:
            assert state is not None and state.h is not None
            held = state.h.id
            if held >= first_id:
                dropped[held - first_id] = True
                states[key] = if_dropped
            elif _drop_stored(conn, store, stream, held):
                earlier += 1
                states[key] = if_dropped
    conn.executemany(
        "INSERT INTO series (stream, key, state) VALUES (?, ?, ?) "
        "ON CONFLICT (stream, key) DO UPDATE SET state = excluded.state",
        [(stream, k, dump_state(spec, s)) for k, s in states.items() if s is not None],
    )
    return dropped, earlier
