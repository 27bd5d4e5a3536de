"""The edge store's SQLite schema, its upgrades, and the per-stream accounting it keeps.

Schema 3 keeps records in chunks (``hybridai.edge.store._chunks``): one row per run of records of a
stream, with the sync state per chunk. Per-stream counters (``streams``) and compression state
(``series``) are as in schema 2. A store of schema 1 or 2 (one row per record) is converted
on open by ``store_upgrade``, batches in flight included.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

SCHEMA_VERSION = 3
COMPRESSED_SEQ = 0  # batch_seq of a chunk left with nothing to send (batches start at 1)
COUNTERS = (
    "records_ingested",
    "records_deduplicated",
    "records_synced",
    "batches_synced",
    "bytes_synced",
    "records_expired",
    "record_ids",  # local ids handed out so far: the next record is record_ids + 1
)
STREAM_COUNTERS = (
    "records",  # records kept now and not compressed away
    "bytes",  # their accounted size (chunks.Chunk.size)
    "ingested",
    "deduplicated",
    "compressed",
    "synced",
    "bytes_synced",
    "expired",
    "evicted_synced",
    "evicted_unsynced",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    first_id INTEGER NOT NULL,
    arrival INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    live INTEGER NOT NULL,
    min_ts REAL NOT NULL,
    max_ts REAL NOT NULL,
    bytes INTEGER NOT NULL,
    data BLOB NOT NULL,
    hashes BLOB NOT NULL,
    dropped BLOB,
    batch_seq INTEGER,
    synced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chunks_unbatched ON chunks (stream, arrival, first_id)
    WHERE batch_seq IS NULL;
CREATE INDEX IF NOT EXISTS chunks_batch ON chunks (batch_seq);
CREATE INDEX IF NOT EXISTS chunks_order ON chunks (arrival, first_id);
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
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, {streams});
CREATE TABLE IF NOT EXISTS series (
    stream TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (stream, key)
);
""".replace("{streams}", ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in STREAM_COUNTERS))


def schema_version(conn: sqlite3.Connection, path: object) -> int:
    """The store's schema version; refuse one newer than this agent knows."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path} has store schema {version}; this agent knows up to "
            f"{SCHEMA_VERSION}: upgrade the agent"
        )
    return version


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing (inside the caller's transaction) and set the version."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)",
        [(name,) for name in COUNTERS],
    )
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


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


def stream_rows(conn: sqlite3.Connection) -> Mapping[str, dict[str, int]]:
    names = ", ".join(STREAM_COUNTERS)
    return {
        row[0]: dict(zip(STREAM_COUNTERS, row[1:], strict=True))
        for row in conn.execute(f"SELECT stream, {names} FROM streams ORDER BY stream")
    }
