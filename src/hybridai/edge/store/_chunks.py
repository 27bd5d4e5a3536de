"""Chunks: how the store keeps records on disk, one SQLite row per batch a producer sent.

A chunk is a run of records of one stream with consecutive local ids (``first_id`` on), held
as one Arrow IPC blob (zstd) next to its records' 64-bit hashes. Writing a batch of thousands
of records is then one row insert, not thousands, which is why a durable append costs about as
much as the fsync it waits for. A chunk moves through sync as a whole (``batch_seq``,
``synced``); it is split when a batch or an eviction needs only its head, rewritten when
retention removes part of it, and never changed once in a batch that is not yet acknowledged.

Records compressed away (``compression``) stay in their chunk, marked in ``dropped``, so that
de-duplication still knows them; they are never sent. ``live`` counts the others, and the
chunk's accounted size shrinks with them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridai.edge.store._dedup import Hashes
from hybridai.edge.store._sqlite import bump_stream
from hybridai.edge.store.columns import U64
from hybridai.edge.store.crypto import PayloadCipher
from hybridai.protocol.sync import TIMESTAMP

if TYPE_CHECKING:
    import pyarrow as pa

CHUNK_OVERHEAD = 128  # the row, its index entries and the batch framing, roughly
FIELDS = (
    "id, stream, first_id, arrival, rows, live, min_ts, max_ts, bytes, dropped, batch_seq, synced"
)
ORDER = "arrival, first_id"  # oldest first: by the arrival of a chunk's oldest record
Mask = np.ndarray[Any, np.dtype[np.bool_]]


@cache
def _ipc_options() -> pa.ipc.IpcWriteOptions:
    import pyarrow as pa

    return pa.ipc.IpcWriteOptions(compression="zstd")


@dataclass(frozen=True)
class Chunk:
    id: int
    stream: str
    first_id: int
    arrival: int  # first_id of its oldest record when it arrived (kept when chunks coalesce)
    rows: int
    live: int
    min_ts: float
    max_ts: float
    bytes: int
    dropped: Mask | None
    batch_seq: int | None
    synced: bool

    @classmethod
    def of(cls, row: Sequence[Any]) -> Chunk:
        cid, stream, first, arrival, rows, live, lo, hi, size, dropped, seq, synced = row
        mask = None if dropped is None else _unpack(dropped, rows)
        return cls(cid, stream, first, arrival, rows, live, lo, hi, size, mask, seq, bool(synced))

    @property
    def size(self) -> int:
        """What the chunk counts for against the quota: its live share of ``bytes``."""
        return accounted(self.bytes, self.rows, self.live)

    def keep(self) -> Mask:
        """Rows not compressed away."""
        return np.ones(self.rows, dtype=bool) if self.dropped is None else ~self.dropped


def _unpack(packed: bytes, rows: int) -> Mask:
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=rows)
    return np.asarray(bits, dtype=bool)


def _pack(mask: Mask | None) -> bytes | None:
    return None if mask is None or not mask.any() else np.packbits(mask).tobytes()


def _aad(stream: str, first_id: int) -> bytes:
    return f"chunk\0{stream}\0{first_id}".encode()


class Chunks:
    """Reads and writes chunk rows inside the store's transactions."""

    def __init__(self, cipher: PayloadCipher | None) -> None:
        self.cipher = cipher

    @staticmethod
    def encode(table: pa.Table) -> bytes:
        """A chunk's records as stored, before sealing: no lock needed (``insert(encoded=)``)."""
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_ipc_options()) as writer:
            writer.write_table(table.combine_chunks())  # one record batch, one framing
        return bytes(sink.getvalue().to_pybytes())

    def _seal(self, stream: str, first_id: int, data: bytes) -> bytes:
        if self.cipher is not None:
            data = self.cipher.seal_bytes(_aad(stream, first_id), data)
        return bytes(data)

    def _decode(self, chunk: Chunk, data: bytes) -> pa.Table:
        import pyarrow as pa

        if self.cipher is not None:
            data = self.cipher.open_bytes(_aad(chunk.stream, chunk.first_id), data, chunk.stream)
        return pa.ipc.open_stream(data).read_all()

    def table(self, conn: sqlite3.Connection, chunk: Chunk) -> pa.Table:
        (data,) = conn.execute("SELECT data FROM chunks WHERE id = ?", (chunk.id,)).fetchone()
        return self._decode(chunk, data)

    def contents(self, conn: sqlite3.Connection, chunk: Chunk) -> tuple[pa.Table, Hashes]:
        """Its records and their hashes, in one read."""
        data, raw = conn.execute(
            "SELECT data, hashes FROM chunks WHERE id = ?", (chunk.id,)
        ).fetchone()
        return self._decode(chunk, data), np.frombuffer(raw, dtype=U64)

    def insert(
        self,
        conn: sqlite3.Connection,
        stream: str,
        first_id: int,
        table: pa.Table,
        hashes: Hashes,
        dropped: Mask | None = None,
        batch_seq: int | None = None,
        synced: bool = False,
        arrival: int | None = None,
        encoded: bytes | None = None,
    ) -> Chunk:
        """Store ``table`` (ts column first) as one chunk; return it.

        ``arrival`` orders it among chunks (default: ``first_id``, it arrives now);
        ``encoded``: ``encode(table)``, when already done.
        """
        arrival = first_id if arrival is None else arrival
        data = self._seal(stream, first_id, self.encode(table) if encoded is None else encoded)
        rows = table.num_rows
        live = rows - (0 if dropped is None else int(dropped.sum()))
        ts = table.column(TIMESTAMP).to_numpy()
        size = len(data) + 8 * rows + CHUNK_OVERHEAD
        packed = _pack(dropped)
        lo, hi = float(ts.min()), float(ts.max())
        values = (stream, first_id, arrival, rows, live, lo, hi, size, data, hashes.tobytes())
        cursor = conn.execute(
            "INSERT INTO chunks (stream, first_id, arrival, rows, live, min_ts, max_ts, bytes, "
            "data, hashes, dropped, batch_seq, synced) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, packed, batch_seq, int(synced)),
        )
        assert cursor.lastrowid is not None
        mask = None if packed is None else dropped
        return Chunk(
            cursor.lastrowid,
            stream,
            first_id,
            arrival,
            rows,
            live,
            lo,
            hi,
            size,
            mask,
            batch_seq,
            synced,
        )

    def delete(self, conn: sqlite3.Connection, chunk: Chunk) -> None:
        conn.execute("DELETE FROM chunks WHERE id = ?", (chunk.id,))

    def split(self, conn: sqlite3.Connection, chunk: Chunk, head_rows: int) -> tuple[Chunk, Chunk]:
        """Cut ``chunk`` after ``head_rows`` rows into two chunks in the same state.

        The stream's ``bytes`` counter follows the change in accounted size.
        """
        assert 0 < head_rows < chunk.rows
        head, tail = self._rewrite(conn, chunk, [(0, head_rows), (head_rows, chunk.rows)])
        bump_stream(conn, chunk.stream, bytes=head.size + tail.size - chunk.size)
        return head, tail

    def keep_rows(self, conn: sqlite3.Connection, chunk: Chunk, keep: Mask) -> list[Chunk]:
        """Rewrite ``chunk`` with only the rows ``keep`` selects, one chunk per run of them.

        Records keep their ids: each run of consecutive kept rows becomes its own chunk.
        """
        kept = np.flatnonzero(keep)
        runs = np.split(kept, np.flatnonzero(np.diff(kept) != 1) + 1) if len(kept) else []
        return self._rewrite(conn, chunk, [(int(r[0]), int(r[-1]) + 1) for r in runs])

    def _rewrite(
        self, conn: sqlite3.Connection, chunk: Chunk, spans: list[tuple[int, int]]
    ) -> list[Chunk]:
        """Replace ``chunk`` by chunks of its rows ``[lo, hi)`` for each span, in its state."""
        if not spans:
            self.delete(conn, chunk)
            return []
        table, hashes = self.contents(conn, chunk)
        self.delete(conn, chunk)
        return [
            self.insert(
                conn,
                chunk.stream,
                chunk.first_id + lo,
                table.slice(lo, hi - lo),
                hashes[lo:hi],
                None if chunk.dropped is None else chunk.dropped[lo:hi],
                chunk.batch_seq,
                chunk.synced,
                chunk.arrival,
            )
            for lo, hi in spans
        ]

    def drop_row(self, conn: sqlite3.Connection, chunk: Chunk, offset: int) -> int:
        """Mark one row compressed away; return the bytes that frees in the accounting."""
        mask = np.zeros(chunk.rows, dtype=bool) if chunk.dropped is None else chunk.dropped.copy()
        if mask[offset]:
            return 0
        mask[offset] = True
        live = chunk.live - 1
        conn.execute(
            "UPDATE chunks SET dropped = ?, live = ? WHERE id = ?", (_pack(mask), live, chunk.id)
        )
        return chunk.size - accounted(chunk.bytes, chunk.rows, live)


def accounted(full: int, rows: int, live: int) -> int:
    """The size a chunk counts for: its live share of what it takes on disk."""
    return max(CHUNK_OVERHEAD, full * live // rows)


def select(conn: sqlite3.Connection, where: str, params: Sequence[Any] = ()) -> list[Chunk]:
    rows = conn.execute(f"SELECT {FIELDS} FROM chunks WHERE {where}", tuple(params)).fetchall()
    return [Chunk.of(row) for row in rows]
