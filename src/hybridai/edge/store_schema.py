"""The edge store's SQLite schema, its upgrades, and the per-stream accounting it keeps.

Schema 2 adds per-stream counters (``streams``), compression state (``series``) and tombstones:
a record compressed away keeps its row (``batch_seq = 0``, ``synced = 1``, empty payload) so
that de-duplication still recognises it when a producer sends it again; retention and quota
eviction remove tombstones like synced records. A record's stored size is its payload's bytes
plus ``RECORD_OVERHEAD`` (row, hash and index entries, roughly); the quota counts that size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

SCHEMA_VERSION = 2
RECORD_OVERHEAD = 64
COMPRESSED_SEQ = 0  # batch_seq of a tombstone: never a real batch (batches start at 1)
COUNTERS = (
    "records_ingested",
    "records_deduplicated",
    "records_synced",
    "batches_synced",
    "bytes_synced",
    "records_expired",
)
STREAM_COUNTERS = (
    "records",  # rows kept now, tombstones included
    "bytes",  # their stored size
    "ingested",
    "deduplicated",
    "compressed",
    "synced",
    "bytes_synced",
    "expired",
    "evicted_synced",
    "evicted_unsynced",
)
SIZE_SQL = f"(length(CAST(payload AS BLOB)) + {RECORD_OVERHEAD})"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    hash BLOB NOT NULL,
    ts REAL NOT NULL,
    payload TEXT NOT NULL,
    batch_seq INTEGER,
    synced INTEGER NOT NULL DEFAULT 0,
    UNIQUE (stream, hash)
);
CREATE INDEX IF NOT EXISTS records_unbatched ON records (stream, id) WHERE batch_seq IS NULL;
CREATE INDEX IF NOT EXISTS records_unbatched_id ON records (id) WHERE batch_seq IS NULL;
CREATE INDEX IF NOT EXISTS records_batch ON records (batch_seq);
CREATE INDEX IF NOT EXISTS records_unsynced_ts ON records (ts) WHERE synced = 0;
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    records INTEGER NOT NULL,
    created_at REAL NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    wire_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SCHEMA_2 = (
    "CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, "
    + ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in STREAM_COUNTERS)
    + ");\n"
    "CREATE TABLE IF NOT EXISTS series (stream TEXT NOT NULL, key TEXT NOT NULL, "
    "state TEXT NOT NULL, PRIMARY KEY (stream, key));\n"
)


def open_schema(conn: sqlite3.Connection, path: object) -> None:
    """Create or upgrade the schema in one transaction; refuse a newer one."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path} has store schema {version}; this agent knows up to "
            f"{SCHEMA_VERSION}: upgrade the agent"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (_SCHEMA + _SCHEMA_2).split(";"):
            if statement.strip():
                conn.execute(statement)
        if version < 2:  # a schema-1 store: count what it already holds
            conn.execute(
                "INSERT OR IGNORE INTO streams (stream, records, bytes) "
                f"SELECT stream, COUNT(*), SUM({SIZE_SQL}) FROM records GROUP BY stream"
            )
        conn.executemany(
            "INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)",
            [(name,) for name in COUNTERS],
        )
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def bump(conn: sqlite3.Connection, name: str, by: int) -> None:
    if by:
        conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))


def bump_stream(conn: sqlite3.Connection, stream: str, **by: int) -> None:
    """Add to a stream's counters (``records=-3, evicted_synced=3`` ...)."""
    changes = {k: v for k, v in by.items() if v}
    if not changes:
        return
    assert set(changes) <= set(STREAM_COUNTERS), changes
    conn.execute("INSERT OR IGNORE INTO streams (stream) VALUES (?)", (stream,))
    sets = ", ".join(f"{k} = {k} + ?" for k in changes)
    conn.execute(f"UPDATE streams SET {sets} WHERE stream = ?", (*changes.values(), stream))


def delete_counted(
    conn: sqlite3.Connection, where: str, params: Iterable[object]
) -> dict[str, tuple[int, int]]:
    """Delete the records ``where`` selects; return ``{stream: (records, bytes)}`` removed.

    The streams' ``records``/``bytes`` are reduced; the caller counts why they went.
    """
    params = list(params)
    gone: dict[str, tuple[int, int]] = {
        stream: (int(n), int(size or 0))
        for stream, n, size in conn.execute(
            f"SELECT stream, COUNT(*), SUM({SIZE_SQL}) FROM records WHERE {where} GROUP BY stream",
            params,
        ).fetchall()
    }
    if gone:
        conn.execute(f"DELETE FROM records WHERE {where}", params)
        for stream, (n, size) in gone.items():
            bump_stream(conn, stream, records=-n, bytes=-size)
    return gone


def stream_rows(conn: sqlite3.Connection) -> Mapping[str, dict[str, int]]:
    names = ", ".join(STREAM_COUNTERS)
    return {
        row[0]: dict(zip(STREAM_COUNTERS, row[1:], strict=True))
        for row in conn.execute(f"SELECT stream, {names} FROM streams ORDER BY stream")
    }
