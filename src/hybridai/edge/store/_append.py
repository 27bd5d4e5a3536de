"""Appends, alone or in a group that shares one transaction and one fsync.

A durable append costs about one fsync; concurrent writers (HTTP requests, MQTT) that each
waited for their own paid it once each. An ``AppendGroup`` takes several batches inside one
``BEGIN IMMEDIATE ... COMMIT``: each batch is all or nothing on its own (a savepoint: a batch
that fails leaves nothing behind and the others go on), batches later in the group see the
earlier ones (de-duplication, sync order, ids), and none is durable, or visible to the index,
before the one ``COMMIT``. Whoever waits on a batch of the group hears of it only after that.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hybridai.edge.store import columns
from hybridai.edge.store._chunks import Chunks, select
from hybridai.edge.store._compress import compress
from hybridai.edge.store._dedup import Hashes, HashIndex, sorted_run
from hybridai.edge.store._sqlite import COMPRESSED_SEQ, bump, bump_stream
from hybridai.edge.store.config import StoreConfig
from hybridai.edge.store.records import AppendResult

if TYPE_CHECKING:
    import pyarrow as pa

COALESCE_ROWS = 1000  # small appends fold into one chunk up to this many records


@dataclass(frozen=True)
class Prepared:
    """What a batch's append needs that can be worked out before the store's lock is taken.

    Its row hashes, and its chunk encoded (Arrow IPC, zstd) when it will most likely be a
    chunk of its own (as many rows as ``COALESCE_ROWS`` or more): the writer holding the lock
    then only seals and inserts it, unless duplicates make the chunk smaller.
    """

    hashes: Hashes
    encoded: bytes | None

    @classmethod
    def of(cls, stream: str, table: pa.Table, hash_key: bytes) -> Prepared:
        alone = table.num_rows >= COALESCE_ROWS
        encoded = Chunks.encode(table) if alone else None
        return cls(columns.row_hashes(stream, table, hash_key), encoded)


class AppendGroup:
    """Batches appended inside one open transaction (the store's lock held).

    Once it commits, the store adds ``staged`` to its index (or rebuilds the index when
    ``evicted``) and notes ``streams`` as waiting for sync.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        chunks: Chunks,
        index: HashIndex,
        config: StoreConfig,
        hash_key: bytes,
        enforce: Callable[[sqlite3.Connection], tuple[int, int]],
    ) -> None:
        self._conn = conn
        self._chunks = chunks
        self._index = index
        self._config = config
        self._hash_key = hash_key
        self._enforce = enforce
        self.staged: list[Hashes] = []  # hashes of the batches appended, sorted, uncommitted
        self.streams: set[str] = set()
        self.evicted = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One batch's writes: kept if the block ends normally, else undone (a savepoint)."""
        staged, streams, evicted = len(self.staged), set(self.streams), self.evicted
        self._conn.execute("SAVEPOINT batch")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO batch")
            self._conn.execute("RELEASE batch")
            del self.staged[staged:]
            self.streams, self.evicted = streams, evicted
            raise
        self._conn.execute("RELEASE batch")

    def append(
        self, stream: str, table: pa.Table, prepared: Prepared | None = None
    ) -> AppendResult:
        """Append a checked table (``columns``); on failure nothing of it stays in the group.

        ``prepared``: its ``Prepared.of``, when already worked out.
        """
        if not table.num_rows:
            return AppendResult(accepted=0, duplicates=0)
        if prepared is None:
            prepared = Prepared(columns.row_hashes(stream, table, self._hash_key), None)
        with self.batch():
            result, added = self._append(stream, table, prepared.hashes, prepared.encoded)
            if result.accepted:
                self.staged.append(sorted_run(added))
                self.streams.add(stream)
            self.evicted = self.evicted or bool(result.evicted)
        return result

    def _append(
        self, stream: str, table: pa.Table, hashes: Hashes, encoded: bytes | None
    ) -> tuple[AppendResult, Hashes]:
        import pyarrow as pa

        conn, chunks = self._conn, self._chunks
        spec = self._config.compression.get(stream)
        fresh = self._index.fresh(hashes, also=self.staged)
        accepted = int(fresh.sum())
        duplicates = table.num_rows - accepted
        compressed = earlier = evicted = 0
        if accepted:
            if accepted < table.num_rows:
                table, hashes = table.filter(pa.array(fresh)), hashes[fresh]
                encoded = None  # not these rows
            rows, kept, arrival, first_id = table, hashes, None, None
            if spec is None:
                rows, kept, arrival, first_id = self._coalesce(stream, table, hashes)
            if first_id is None:
                first_id = _next_ids(conn, rows.num_rows)
            else:
                _next_ids(conn, table.num_rows)  # they follow the folded ones
            dropped = None
            if spec is not None:
                dropped, earlier = compress(
                    conn, chunks, spec, stream, first_id, columns.to_rows(table)
                )
                compressed = int(dropped.sum())
            chunk = chunks.insert(
                conn,
                stream,
                first_id,
                rows,
                kept,
                dropped,
                arrival=arrival,
                encoded=encoded if rows is table else None,
            )
            if chunk.live == 0:
                conn.execute(
                    "UPDATE chunks SET batch_seq = ?, synced = 1 WHERE id = ?",
                    (COMPRESSED_SEQ, chunk.id),
                )
            bump_stream(conn, stream, records=chunk.live, bytes=chunk.size)
        bump(conn, "records_ingested", accepted)
        bump(conn, "records_deduplicated", duplicates)
        bump_stream(conn, stream, ingested=accepted, deduplicated=duplicates, compressed=compressed)
        if accepted:
            evicted = sum(self._enforce(conn))
        result = AppendResult(
            accepted, duplicates, compressed=compressed + earlier, evicted=evicted
        )
        return result, hashes

    def _coalesce(
        self, stream: str, table: pa.Table, hashes: Hashes
    ) -> tuple[pa.Table, Hashes, int | None, int | None]:
        """Fold a small append into the stream's newest small unbatched chunk, if any.

        One record per MQTT message or SDK call would otherwise make a chunk each, a
        kilobyte of framing for a hundred bytes of data. The chunk keeps its ids when the new
        records' ids follow on (nothing else was stored since); otherwise the records folded
        in, which have never left the store, take new ids. ``arrival`` keeps their place in
        the sync order. Returns what to store, the arrival to keep and the first id to keep
        (None: a chunk of its own / new ids).
        """
        alone = table, hashes, None, None
        if table.num_rows >= COALESCE_ROWS:
            return alone
        conn, chunks = self._conn, self._chunks
        found = select(
            conn,
            "stream = ? AND batch_seq IS NULL ORDER BY arrival DESC, first_id DESC LIMIT 1",
            (stream,),
        )
        if not found or found[0].dropped is not None:
            return alone
        tail = found[0]
        if tail.rows + table.num_rows > COALESCE_ROWS:
            return alone
        old_table, old_hashes = chunks.contents(conn, tail)
        merged = columns.unify([old_table, table])
        held = np.concatenate([old_hashes, hashes])
        chunks.delete(conn, tail)
        bump_stream(conn, stream, records=-tail.live, bytes=-tail.size)
        (last,) = conn.execute("SELECT value FROM counters WHERE name = 'record_ids'").fetchone()
        follows = tail.first_id + tail.rows == int(last) + 1  # its last id is the newest
        return merged, held, tail.arrival, tail.first_id if follows else None


def _next_ids(conn: sqlite3.Connection, n: int) -> int:
    (last,) = conn.execute("SELECT value FROM counters WHERE name = 'record_ids'").fetchone()
    bump(conn, "record_ids", n)
    return int(last) + 1
