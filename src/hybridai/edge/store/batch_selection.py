"""Which records form the next sync batch: highest priority first, within one oldest first.

Only one batch is outstanding at a time, and it is handed out again, record for record, until
the cloud acknowledges it, whatever arrived since: the lake keys each commit by
``(device, batch_seq)`` per stream, so batches must reach it in the order they were cut, and a
resend must carry the same bytes. A low-priority batch cut before an outage (or a crash) is
therefore resent first when the link returns; it delays alerts by one batch at most.

A new batch goes to the ready stream of the highest priority class; between streams of the same
class, to the one whose oldest unbatched record arrived first. A stream is ready when it has a
full batch (``max_records`` or ``max_bytes``), when its oldest unbatched record has waited
``max_wait_s``, or always when it is of the high class (alerts never wait to fill a batch).
Waiting is measured from arrival in this process: after a restart everything is ready at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from hybridai.edge.store._chunks import ORDER, Chunk, Chunks, select
from hybridai.edge.store.config import HIGH


@dataclass(frozen=True)
class Cut:
    seq: int
    stream: str
    chunks: list[Chunk]


def pending(conn: sqlite3.Connection) -> Cut | None:
    row = conn.execute(
        "SELECT seq, stream FROM batches WHERE acked = 0 ORDER BY seq LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    seq, stream = row
    return Cut(seq, stream, select(conn, f"batch_seq = ? ORDER BY {ORDER}", (seq,)))


def _take(
    conn: sqlite3.Connection, store: Chunks, stream: str, max_records: int, max_bytes: int
) -> tuple[list[Chunk], bool]:
    """The unbatched chunks that fit, oldest first (splitting the one that overflows)."""
    taken: list[Chunk] = []
    records = size = 0
    unbatched = f"stream = ? AND batch_seq IS NULL ORDER BY {ORDER}"
    for chunk in select(conn, unbatched, (stream,)):
        room_records, room_bytes = max_records - records, max_bytes - size
        if chunk.live <= room_records and chunk.size <= room_bytes:
            taken.append(chunk)
            records, size = records + chunk.live, size + chunk.size
            if records >= max_records or size >= max_bytes:
                return taken, True
            continue
        per_row = max(1, chunk.size // max(chunk.live, 1))
        head = min(room_records, room_bytes // per_row)
        if not taken:
            head = max(head, 1)  # one record over the byte limit still goes, alone
        if head >= 1:
            head_rows = _rows_for(chunk, head)
            if head_rows < chunk.rows:
                chunk = store.split(conn, chunk, head_rows)[0]
            taken.append(chunk)
        return taken, True
    return taken, False


def _rows_for(chunk: Chunk, live: int) -> int:
    """How many rows from the head of ``chunk`` hold ``live`` records not compressed away."""
    held = chunk.keep().cumsum()
    return int((held <= live).sum()) if held[-1] > live else chunk.rows


def new_batch(
    conn: sqlite3.Connection,
    store: Chunks,
    *,
    priority: Callable[[str], int],
    max_records: int,
    max_bytes: int,
    max_wait_s: float,
    skip: frozenset[str],
    min_priority: int,
    waiting_since: MutableMapping[str, float],
    now: float,
) -> Cut | None:
    """Cut the next batch (a new sequence number) or return None when no stream is ready."""
    heads: list[tuple[int, int, str]] = [
        (-priority(stream), first, stream)
        for stream, first in conn.execute(
            "SELECT stream, MIN(arrival) FROM chunks WHERE batch_seq IS NULL GROUP BY stream"
        ).fetchall()
        if stream not in skip and priority(stream) >= min_priority
    ]
    for _, _, stream in sorted(heads):
        taken, full = _take(conn, store, stream, max_records, max_bytes)
        since = waiting_since.get(stream)
        overdue = since is None or now - since >= max_wait_s
        if not taken or not (full or overdue or priority(stream) >= HIGH):
            continue
        records = sum(c.live for c in taken)
        cursor = conn.execute(
            "INSERT INTO batches (stream, records, created_at) VALUES (?, ?, ?)",
            (stream, records, now),
        )
        seq = cursor.lastrowid
        assert seq is not None
        conn.executemany(
            "UPDATE chunks SET batch_seq = ? WHERE id = ?", [(seq, c.id) for c in taken]
        )
        if not full:
            waiting_since.pop(stream, None)  # everything it had is in this batch
        return Cut(seq, stream, select(conn, f"batch_seq = ? ORDER BY {ORDER}", (seq,)))
    return None
