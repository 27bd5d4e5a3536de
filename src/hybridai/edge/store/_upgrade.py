"""Converting a store of schema 1 or 2 (one SQLite row per record) to chunks, on open.

Records keep their local ids (so a batch in flight is resent with the same record ids), their
batch and their sync state; each run of consecutive ids of one stream in one state becomes a
chunk. Records compressed away under schema 2 (tombstones) are not carried over: they had
nothing left to send. The old table is dropped in the same transaction, so a crash during the
upgrade leaves the old store as it was.
"""

from __future__ import annotations

import itertools
import json
import sqlite3

from hybridai.edge.store import columns
from hybridai.edge.store._chunks import Chunks
from hybridai.edge.store._sqlite import COMPRESSED_SEQ, bump_stream
from hybridai.edge.store.crypto import PayloadCipher
from hybridai.protocol.sync import TIMESTAMP

Row = tuple[int, str, float, str | bytes, int | None, int]


def upgrade_rows(
    conn: sqlite3.Connection, store: Chunks, cipher: PayloadCipher | None, hash_key: bytes
) -> None:
    """Move every record of the old ``records`` table into chunks (inside the transaction)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
    ).fetchone()
    if exists is None:
        return
    conn.execute("UPDATE streams SET records = 0, bytes = 0")  # counted again below
    rows = conn.execute(
        "SELECT id, stream, ts, payload, batch_seq, synced FROM records "
        "WHERE batch_seq IS NULL OR batch_seq != ? ORDER BY stream, id",
        (COMPRESSED_SEQ,),
    ).fetchall()

    def run_key(item: tuple[int, Row]) -> tuple[str, int | None, int, int]:
        position, (record_id, stream, _, _, seq, synced) = item
        return (stream, seq, synced, record_id - position)

    for (stream, seq, synced, _), run in itertools.groupby(enumerate(rows), key=run_key):
        records = [row for _, row in run]
        payloads = []
        for _, _, ts, payload, _, _ in records:
            text = payload if cipher is None else cipher.open(stream, ts, payload)
            payloads.append({**json.loads(text), TIMESTAMP: ts})
        table = columns.from_records(payloads)
        hashes = columns.row_hashes(stream, table, hash_key)
        chunk = store.insert(conn, stream, records[0][0], table, hashes, None, seq, bool(synced))
        bump_stream(conn, stream, records=chunk.live, bytes=chunk.size)
    (last,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()
    conn.execute("UPDATE counters SET value = ? WHERE name = 'record_ids'", (int(last),))
    conn.execute("DROP TABLE records")
