"""Which records form the next sync batch: highest priority first, within one oldest first.

Only one batch is outstanding at a time, and it is handed out again, record for record, until
the cloud acknowledges it, whatever arrived since: the lake keys each commit by
``(device, batch_seq)`` per dataset, so batches must reach it in the order they were cut, and a
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

from hybridai.edge.store_config import HIGH

Row = tuple[int, float, str]
_ROW_OVERHEAD = 32  # the ts and framing of a record in a batch, roughly


@dataclass(frozen=True)
class Cut:
    seq: int
    stream: str
    rows: list[Row]


def pending(conn: sqlite3.Connection) -> Cut | None:
    row = conn.execute(
        "SELECT seq, stream FROM batches WHERE acked = 0 ORDER BY seq LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    seq, stream = row
    rows = conn.execute(
        "SELECT id, ts, payload FROM records WHERE batch_seq = ? ORDER BY id", (seq,)
    ).fetchall()
    return Cut(seq, stream, rows)


def _candidates(conn: sqlite3.Connection, stream: str, max_records: int) -> list[Row]:
    rows: list[Row] = conn.execute(
        "SELECT id, ts, payload FROM records WHERE stream = ? AND batch_seq IS NULL "
        "ORDER BY id LIMIT ?",
        (stream, max_records),
    ).fetchall()
    return rows


def _take(rows: list[Row], max_records: int, max_bytes: int) -> tuple[list[Row], bool]:
    """The rows that fit, and whether they make a full batch."""
    taken: list[Row] = []
    size = 0
    for row in rows:
        size += len(row[2]) + _ROW_OVERHEAD
        if taken and size > max_bytes:
            return taken, True
        taken.append(row)
    return taken, len(taken) >= max_records or size >= max_bytes


def new_batch(
    conn: sqlite3.Connection,
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
    heads: list[tuple[int, int, str]] = []
    for (stream,) in conn.execute("SELECT stream FROM streams").fetchall():
        if stream in skip or priority(stream) < min_priority:
            continue
        row = conn.execute(
            "SELECT MIN(id) FROM records WHERE stream = ? AND batch_seq IS NULL", (stream,)
        ).fetchone()
        if row[0] is not None:
            heads.append((-priority(stream), row[0], stream))
    for _, _, stream in sorted(heads):
        taken, full = _take(_candidates(conn, stream, max_records), max_records, max_bytes)
        since = waiting_since.get(stream)
        overdue = since is None or now - since >= max_wait_s
        if not (full or overdue or priority(stream) >= HIGH):
            continue
        cursor = conn.execute(
            "INSERT INTO batches (stream, records, created_at) VALUES (?, ?, ?)",
            (stream, len(taken), now),
        )
        seq = cursor.lastrowid
        assert seq is not None
        conn.execute(
            "UPDATE records SET batch_seq = ? WHERE stream = ? AND batch_seq IS NULL AND id <= ?",
            (seq, stream, taken[-1][0]),
        )
        if not full:
            waiting_since.pop(stream, None)  # everything it had is in this batch
        return Cut(seq, stream, taken)
    return None
