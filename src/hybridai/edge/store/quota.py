"""The store's disk quota: what goes when it is full, in a fixed and reported order.

When the chunks' accounted size exceeds the quota, records are evicted until it is back under
``TARGET`` of the quota (so that not every append evicts), in this order:

1. synced records, lowest priority class first, oldest first;
2. unsynced records not yet in a batch, of the ``low`` class, then of ``normal``, oldest first.

Unsynced ``high`` records (alerts) and the records of the batch in flight are never evicted;
when they alone exceed the quota the store stays over it and says so (``over_quota``) rather
than lose them. Eviction takes whole chunks, splitting the last one so that no more unsynced
records go than needed. Every eviction is counted per stream, synced apart from unsynced, and
unsynced evictions are logged as warnings: nothing goes silently.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from hybridai.edge.store._chunks import ORDER, Chunks, select
from hybridai.edge.store._sqlite import bump_stream
from hybridai.edge.store.config import HIGH, PRIORITIES

log = logging.getLogger(__name__)
TARGET = 0.9


def stored_bytes(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM streams").fetchone()[0])


def enforce(
    conn: sqlite3.Connection,
    store: Chunks,
    quota: int | None,
    priority: Callable[[str], int],
) -> tuple[int, int]:
    """Evict until under the quota (inside the caller's transaction); ``(synced, unsynced)``."""
    if quota is None:
        return 0, 0
    excess = stored_bytes(conn) - quota
    if excess <= 0:
        return 0, 0
    excess = stored_bytes(conn) - int(quota * TARGET)
    streams = [row[0] for row in conn.execute("SELECT stream FROM streams").fetchall()]
    counts = {True: 0, False: 0}
    for synced in (True, False):
        for cls in sorted(PRIORITIES.values()):
            if excess <= 0 or (not synced and cls >= HIGH):
                break
            members = [s for s in streams if priority(s) == cls]
            if members:
                freed, n = _evict(conn, store, members, synced, excess)
                excess -= freed
                counts[synced] += n
    if counts[False]:
        log.warning("disk quota: evicted %d unsynced records (lowest priority)", counts[False])
    if excess > 0:
        log.warning("disk quota exceeded by unsynced high-priority records; keeping them")
    return counts[True], counts[False]


def _evict(
    conn: sqlite3.Connection, store: Chunks, streams: list[str], synced: bool, excess: int
) -> tuple[int, int]:
    """Delete the oldest records of ``streams`` until ``excess`` bytes are freed."""
    marks = ",".join("?" * len(streams))
    state = "synced = 1" if synced else "synced = 0 AND batch_seq IS NULL"
    where = f"{state} AND stream IN ({marks}) ORDER BY {ORDER} LIMIT 1"
    column = "evicted_synced" if synced else "evicted_unsynced"
    freed = count = 0
    while freed < excess and (found := select(conn, where, streams)):
        chunk = found[0]
        if chunk.size > excess - freed and chunk.rows > 1:
            per_row = max(1, chunk.size // chunk.rows)
            head = min(chunk.rows - 1, -(-(excess - freed) // per_row))
            before = stored_bytes(conn)
            chunk = store.split(conn, chunk, head)[0]
            excess += stored_bytes(conn) - before  # each part carries its own overhead
        store.delete(conn, chunk)
        freed += chunk.size
        count += chunk.live
        change = {"records": -chunk.live, "bytes": -chunk.size, column: chunk.live}
        bump_stream(conn, chunk.stream, **change)
    return freed, count
