"""The edge's local store: records kept on disk until the cloud has acknowledged them.

SQLite in WAL mode with ``synchronous=FULL`` (fsync at every commit): when ``append`` returns,
the records are on stable storage and survive a crash or a power cut, so an edge may acknowledge
them to the sender. A batch a producer sends is kept as one chunk (``hybridai.edge.store._chunks``):
its records as Arrow columns in one row, checked and hashed as columns (``columns``), their
hashes checked against an in-memory index of every record held (``dedup``). Records are
grouped into sync batches whose sequence numbers are persistent and never reused; a batch
created before a crash is handed out again, record for record, until the cloud acknowledges
it, which is what makes ``(device_id, batch_seq)`` a sound idempotency key. Which stream gets
the next batch: ``batching``; compression of slow signals: ``compression``; the disk quota:
``quota``; per-stream rules: ``store_config``.

One connection, guarded by a lock, serves FastAPI worker threads and the asyncio sync loop
(through ``asyncio.to_thread``) alike. With a key, chunks are encrypted at rest and the
de-duplication hash is keyed (``hybridai.edge.store.crypto``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridai.edge.store import batch_selection, columns, quota
from hybridai.edge.store._append import AppendGroup, Prepared
from hybridai.edge.store._chunks import Chunk, Chunks, select
from hybridai.edge.store._dedup import HashIndex
from hybridai.edge.store._sqlite import (
    bump,
    bump_stream,
    create_schema,
    schema_version,
    stream_rows,
)
from hybridai.edge.store._upgrade import upgrade_rows
from hybridai.edge.store.config import LOW, PRIORITY_NAMES, StoreConfig
from hybridai.edge.store.crypto import PayloadCipher, check_store_key
from hybridai.edge.store.records import (
    RESERVED_FIELDS,
    AppendResult,
    InvalidRecord,
    StoredRecord,
    check_stream,
)
from hybridai.protocol.fleet import StoreStats, StreamStats
from hybridai.protocol.sync import TIMESTAMP

if TYPE_CHECKING:
    import pyarrow as pa


__all__ = [
    "RESERVED_FIELDS",
    "AppendResult",
    "EdgeStore",
    "InvalidRecord",
    "PendingBatch",
    "StoredRecord",
]


@dataclass(frozen=True, eq=False)
class PendingBatch:
    """Records of one stream handed out for sync under sequence number ``seq``.

    ``table`` holds ``ts`` and the records' fields as columns, ``ids`` their local ids.
    """

    seq: int
    stream: str
    table: pa.Table
    ids: np.ndarray[Any, np.dtype[np.int64]]

    @classmethod
    def of_records(cls, seq: int, stream: str, records: Sequence[StoredRecord]) -> PendingBatch:
        table = columns.from_records([{**r.payload, TIMESTAMP: r.ts} for r in records])
        ids = np.array([r.local_id for r in records], dtype=np.int64)
        return cls(seq, stream, table, ids)

    @cached_property
    def records(self) -> list[StoredRecord]:
        return [
            StoredRecord(local_id=int(i), ts=ts, payload=fields)
            for i, (ts, fields) in zip(self.ids, columns.to_rows(self.table), strict=True)
        ]

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PendingBatch):
            return NotImplemented
        return (
            (self.seq, self.stream) == (other.seq, other.stream)
            and self.table.equals(other.table, check_metadata=True)
            and np.array_equal(self.ids, other.ids)
        )

    __hash__ = None  # type: ignore[assignment]


class EdgeStore:
    """Durable, de-duplicating record store with prioritised, resumable sync batches."""

    def __init__(
        self,
        path: Path,
        key: bytes | None = None,
        config: StoreConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.config = config or StoreConfig()
        self._clock = clock
        self._waiting_since: dict[str, float] = {}  # stream -> arrival of its oldest unbatched
        self._lock = threading.RLock()  # held across a transaction and the index update
        self._cipher = PayloadCipher(key) if key is not None else None
        self._hash_key = b"" if self._cipher is None else self._cipher.dedup_key
        self._chunks = Chunks(self._cipher)
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            version = schema_version(self._conn, self.path)
            with self._transaction() as conn:
                create_schema(conn)
                if 0 < version < 3:
                    upgrade_rows(conn, self._chunks, self._cipher, self._hash_key)
                check_store_key(conn, self._cipher, self.path)
            self._index = self._load_index()
        except BaseException:
            self._conn.close()
            raise

    def _load_index(self) -> HashIndex:
        rows = self._conn.execute("SELECT hashes FROM chunks").fetchall()
        return HashIndex(np.frombuffer(raw, dtype=columns.U64) for (raw,) in rows)

    def configure(self, config: StoreConfig) -> None:
        """Apply new per-stream rules (from settings or the desired state) from now on."""
        self.config = config

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def append(self, stream: str, records: Sequence[Any]) -> AppendResult:
        """Store ``records`` all or nothing; durable when this returns.

        A record whose content (with its stream) is already stored counts as a duplicate.
        With compression configured for the stream, points it makes redundant are dropped in
        the same transaction; over the quota, records are evicted (``quota``).
        """
        check_stream(stream)  # before the records: a wrong stream name is the first error
        return self.append_table(stream, columns.from_records(records), checked=True)

    def append_table(self, stream: str, table: pa.Table, *, checked: bool = False) -> AppendResult:
        """Store the records of an Arrow table (``ts`` plus flat fields), as ``append`` does.

        ``checked``: the table came from ``columns.from_records`` or ``columns.from_arrow``.
        """
        check_stream(stream)
        if not checked:
            table = columns.from_arrow(table)
        if not table.num_rows:
            return AppendResult(accepted=0, duplicates=0)
        prepared = self.prepare(stream, table)
        with self.group() as group:
            return group.append(stream, table, prepared)

    def prepare(self, stream: str, table: pa.Table) -> Prepared:
        """What ``AppendGroup.append`` can take ready-made: work done before the lock."""
        return Prepared.of(stream, table, self._hash_key)

    @contextmanager
    def group(self) -> Iterator[AppendGroup]:
        """Appends that share one transaction and one fsync (``_append``).

        Every batch appended in the block is durable, and counted by de-duplication, once the
        block exits without an exception; none is before.
        """
        with self._lock:
            with self._transaction() as conn:
                group = AppendGroup(
                    conn, self._chunks, self._index, self.config, self._hash_key, self._enforce
                )
                yield group
            if group.evicted:  # records went: rebuild the index from what the store holds
                self._index = self._load_index()
            else:
                for run in group.staged:
                    self._index.add(run)
            now = self._clock()
            for stream in group.streams:
                self._waiting_since.setdefault(stream, now)

    def _enforce(self, conn: sqlite3.Connection) -> tuple[int, int]:
        return quota.enforce(conn, self._chunks, self.config.quota_bytes, self.config.priority)

    def enforce_quota(self) -> tuple[int, int]:
        """Evict down to the quota now (after it was lowered); ``(synced, unsynced)``."""
        with self._lock:
            with self._transaction() as conn:
                evicted = self._enforce(conn)
            if any(evicted):
                self._index = self._load_index()
        return evicted

    def next_batch(
        self,
        max_records: int = 5000,
        max_bytes: int | None = None,
        skip_streams: frozenset[str] = frozenset(),
        *,
        max_wait_s: float = 0.0,
        min_priority: int = LOW,
    ) -> PendingBatch | None:
        """Return the batch to send now, or None when nothing is waiting (or ready).

        An unacknowledged batch is returned again unchanged (whatever the limits), so a resend
        after a crash carries the same records. Otherwise a new batch is cut as
        ``batch_selection`` says (priority, then age; full, overdue or high priority).
        ``max_bytes`` bounds the records' stored size; a batch always holds at least one
        record. Streams in ``skip_streams`` (local-only by policy) or below ``min_priority``
        (outside the sync window) never get a new batch. ``max_bytes`` defaults to the store's
        config; ``max_wait_s`` to 0 (cut whatever is there: the uploader passes the configured
        wait).
        """
        max_bytes = self.config.batch_max_bytes if max_bytes is None else max_bytes
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be >= 1")
        with self._transaction() as conn:
            cut = batch_selection.pending(conn) or batch_selection.new_batch(
                conn,
                self._chunks,
                priority=self.config.priority,
                max_records=max_records,
                max_bytes=max_bytes,
                max_wait_s=max_wait_s,
                skip=skip_streams,
                min_priority=min_priority,
                waiting_since=self._waiting_since,
                now=self._clock(),
            )
            if cut is None:
                return None
            import pyarrow as pa  # only now: an idle edge never loads it (issue 13, memory)

            tables, ids = [], []
            for chunk in cut.chunks:
                keep = chunk.keep()
                table = self._chunks.table(conn, chunk)
                tables.append(table if chunk.dropped is None else table.filter(pa.array(keep)))
                ids.append(np.arange(chunk.first_id, chunk.first_id + chunk.rows)[keep])
        return PendingBatch(
            seq=cut.seq,
            stream=cut.stream,
            table=columns.unify(tables),
            ids=np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64),
        )

    def withdraw_batch(self, seq: int) -> None:
        """Take back an unacknowledged batch whose stream became local-only.

        Its records return to the unbatched pool; ``seq`` is never used again.
        """
        with self._transaction() as conn:
            conn.execute("DELETE FROM batches WHERE seq = ? AND acked = 0", (seq,))
            conn.execute(
                "UPDATE chunks SET batch_seq = NULL WHERE batch_seq = ? AND synced = 0", (seq,)
            )

    def expire(
        self, stream: str, older_than_ts: float, local_only: bool = False
    ) -> tuple[int, int]:
        """Apply retention to ``stream``: delete its synced records older than the cutoff.

        Unsynced records are never deleted silently: they are kept and counted as overdue,
        except for a local-only stream (restricted by policy), whose records never sync and
        expire like synced ones. Returns ``(deleted, overdue)``.
        """
        check_stream(stream)
        deleted = overdue = 0
        with self._lock:
            with self._transaction() as conn:
                for chunk in select(conn, "stream = ? AND min_ts < ?", (stream, older_than_ts)):
                    old = self._older(conn, chunk, older_than_ts)
                    expires = chunk.synced or (local_only and chunk.batch_seq is None)
                    if not expires:
                        overdue += int((old & chunk.keep()).sum())
                        continue
                    n = int((old & chunk.keep()).sum())
                    kept = self._chunks.keep_rows(conn, chunk, ~old)
                    live, size = sum(c.live for c in kept), sum(c.size for c in kept)
                    bump_stream(conn, stream, records=live - chunk.live, bytes=size - chunk.size)
                    deleted += n
                bump(conn, "records_expired", deleted)
                bump_stream(conn, stream, expired=deleted)
            if deleted:
                self._index = self._load_index()
        return deleted, overdue

    def _older(
        self, conn: sqlite3.Connection, chunk: Chunk, cutoff: float
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        if chunk.max_ts < cutoff:
            return np.ones(chunk.rows, dtype=bool)
        ts = self._chunks.table(conn, chunk).column(TIMESTAMP).to_numpy()
        return np.asarray(ts < cutoff)

    def mark_synced(self, seq: int, wire_bytes: int) -> None:
        """Record the cloud's acknowledgement of batch ``seq``; repeating it changes nothing."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT acked, records, stream FROM batches WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                raise ValueError(f"no batch {seq} was handed out by this store")
            acked, count, stream = row
            if not acked:
                conn.execute(
                    "UPDATE batches SET acked = 1, wire_bytes = ? WHERE seq = ?",
                    (wire_bytes, seq),
                )
                conn.execute("UPDATE chunks SET synced = 1 WHERE batch_seq = ?", (seq,))
                bump(conn, "records_synced", count)
                bump(conn, "batches_synced", 1)
                bump(conn, "bytes_synced", wire_bytes)
                bump_stream(conn, stream, synced=count, bytes_synced=wire_bytes)

    def stats(
        self, now: float | None = None, local_only: frozenset[str] = frozenset()
    ) -> StoreStats:
        """Counters since the store was created, and the backlog as of ``now``, per stream.

        Records of ``local_only`` streams are counted apart: they are not a backlog.
        """
        now = time.time() if now is None else now
        with self._lock:
            counters = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
            per_stream = stream_rows(self._conn)
            unsynced = {
                s: (int(n), oldest)
                for s, n, oldest in self._conn.execute(
                    "SELECT stream, SUM(live), MIN(min_ts) FROM chunks "
                    "WHERE synced = 0 AND live > 0 GROUP BY stream"
                ).fetchall()
            }
        streams: dict[str, StreamStats] = {}
        for name, c in per_stream.items():
            n, oldest = unsynced.get(name, (0, None))
            streams[name] = StreamStats(
                priority=PRIORITY_NAMES[self.config.priority(name)],
                records_ingested=c["ingested"],
                records_deduplicated=c["deduplicated"],
                records_compressed=c["compressed"],
                records_stored=c["records"],
                bytes_stored=c["bytes"],
                backlog_records=n,
                oldest_unsynced_age_s=None if oldest is None else max(0.0, now - oldest),
                records_synced=c["synced"],
                bytes_synced=c["bytes_synced"],
                records_expired=c["expired"],
                records_evicted_synced=c["evicted_synced"],
                records_evicted_unsynced=c["evicted_unsynced"],
            )
        backlog = [s for name, s in streams.items() if name not in local_only]
        ages = [s.oldest_unsynced_age_s for s in backlog if s.oldest_unsynced_age_s is not None]
        stored = sum(s.bytes_stored for s in streams.values())
        limit = self.config.quota_bytes
        return StoreStats(
            records_ingested=counters["records_ingested"],
            records_synced=counters["records_synced"],
            records_deduplicated=counters["records_deduplicated"],
            backlog_records=sum(s.backlog_records for s in backlog),
            oldest_unsynced_age_s=max(ages) if ages else None,
            batches_synced=counters["batches_synced"],
            bytes_synced=counters["bytes_synced"],
            records_expired=counters["records_expired"],
            local_only_records=sum(unsynced.get(s, (0, None))[0] for s in local_only),
            records_compressed=sum(s.records_compressed for s in streams.values()),
            records_evicted_synced=sum(s.records_evicted_synced for s in streams.values()),
            records_evicted_unsynced=sum(s.records_evicted_unsynced for s in streams.values()),
            bytes_stored=stored,
            quota_bytes=limit,
            over_quota=limit is not None and stored > limit,
            streams=streams,
        )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Durably keep a small piece of agent state (device credential, cursors)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
