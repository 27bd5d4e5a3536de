"""The edge's local store: records kept on disk until the cloud has acknowledged them.

SQLite in WAL mode with ``synchronous=FULL`` (fsync at every commit): when ``append`` returns,
the records are on stable storage and survive a crash or a power cut, so an edge may acknowledge
them to the sender. Records are grouped into sync batches whose sequence numbers are persistent
and never reused; a batch created before a crash is handed out again, record for record, until
the cloud acknowledges it, which is what makes ``(device_id, batch_seq)`` a sound idempotency
key. Which stream gets the next batch: ``hybridai.edge.batching``; compression of slow signals:
``compression``; the disk quota: ``quota``; per-stream rules: ``store_config``.

One connection, guarded by a lock, serves FastAPI worker threads and the asyncio sync loop
(through ``asyncio.to_thread``) alike. With a key, payloads are encrypted at rest and the
de-duplication hash is keyed (``hybridai.edge.store_crypto``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hybridai.edge import batching, quota
from hybridai.edge.records import (
    RESERVED_FIELDS,
    STREAM_PATTERN,
    AppendResult,
    InvalidRecord,
    PendingBatch,
    StoredRecord,
    check_stream,
    prepare,
    to_records,
)
from hybridai.edge.store_compress import compress
from hybridai.edge.store_config import LOW, PRIORITY_NAMES, StoreConfig
from hybridai.edge.store_crypto import PayloadCipher, check_store_key
from hybridai.edge.store_schema import (
    RECORD_OVERHEAD,
    bump,
    bump_stream,
    delete_counted,
    open_schema,
    stream_rows,
)
from hybridai.protocol.fleet import StoreStats, StreamStats

__all__ = [
    "RESERVED_FIELDS",
    "STREAM_PATTERN",
    "AppendResult",
    "EdgeStore",
    "InvalidRecord",
    "PendingBatch",
    "StoredRecord",
]


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
        self._lock = threading.Lock()
        self._cipher = PayloadCipher(key) if key is not None else None
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            open_schema(self._conn, self.path)
            check_store_key(self._conn, self._cipher, self.path)
        except BaseException:
            self._conn.close()
            raise

    def configure(self, config: StoreConfig) -> None:
        """Apply new per-stream rules (from settings or the desired state) from now on."""
        self.config = config

    def _hash(self, content: bytes) -> bytes:
        if self._cipher is None:
            return hashlib.sha256(content).digest()
        return self._cipher.record_hash(content)

    def _seal(self, stream: str, ts: float, payload: str) -> str | bytes:
        return payload if self._cipher is None else self._cipher.seal(stream, ts, payload)

    def _records(self, stream: str, rows: list[tuple[int, float, Any]]) -> list[StoredRecord]:
        if self._cipher is None:
            return to_records(rows)
        opened = [(i, ts, self._cipher.open(stream, ts, p)) for i, ts, p in rows]
        return to_records(opened)

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

    def append(self, stream: str, records: list[dict[str, Any]]) -> AppendResult:
        """Store ``records`` all or nothing; durable when this returns.

        A record whose content (with its stream) is already stored counts as a duplicate.
        With compression configured for the stream, points it makes redundant become
        tombstones in the same transaction; over the quota, records are evicted (``quota``).
        """
        check_stream(stream)
        prepared = [prepare(i, r) for i, r in enumerate(records)]
        if not prepared:
            return AppendResult(accepted=0, duplicates=0)
        prefix = stream.encode() + b"\0"
        spec = self.config.compression.get(stream)
        accepted = size = compressed = 0
        with self._transaction() as conn:
            for (ts, payload, canonical), record in zip(prepared, records, strict=True):
                sealed = self._seal(stream, ts, payload)
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO records (stream, hash, ts, payload) VALUES (?, ?, ?, ?)",
                    (stream, self._hash(prefix + canonical), ts, sealed),
                )
                if cursor.rowcount:
                    accepted += 1
                    raw = sealed if isinstance(sealed, bytes) else sealed.encode()
                    size += len(raw) + RECORD_OVERHEAD
                    if spec is not None:
                        assert cursor.lastrowid is not None
                        fields = {k: v for k, v in record.items() if k != "ts"}
                        compressed += compress(conn, spec, stream, cursor.lastrowid, ts, fields)
            duplicates = len(prepared) - accepted
            bump(conn, "records_ingested", accepted)
            bump(conn, "records_deduplicated", duplicates)
            bump_stream(
                conn,
                stream,
                records=accepted,
                bytes=size,
                ingested=accepted,
                deduplicated=duplicates,
            )
            evicted = sum(quota.enforce(conn, self.config.quota_bytes, self.config.priority))
        if accepted:
            self._waiting_since.setdefault(stream, self._clock())
        return AppendResult(accepted, duplicates, compressed=compressed, evicted=evicted)

    def enforce_quota(self) -> tuple[int, int]:
        """Evict down to the quota now (after it was lowered); ``(synced, unsynced)``."""
        with self._transaction() as conn:
            return quota.enforce(conn, self.config.quota_bytes, self.config.priority)

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
        ``hybridai.edge.batching`` says (priority, then age; full, overdue or high priority).
        ``max_bytes`` bounds the payloads' JSON size; a batch always holds at least one record.
        Streams in ``skip_streams`` (local-only by policy) or below ``min_priority`` (outside
        the sync window) never get a new batch. ``max_bytes`` defaults to the store's config;
        ``max_wait_s`` to 0 (cut whatever is there: the uploader passes the configured wait).
        """
        max_bytes = self.config.batch_max_bytes if max_bytes is None else max_bytes
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be >= 1")
        with self._transaction() as conn:
            cut = batching.pending(conn) or batching.new_batch(
                conn,
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
        return PendingBatch(
            seq=cut.seq, stream=cut.stream, records=self._records(cut.stream, cut.rows)
        )

    def withdraw_batch(self, seq: int) -> None:
        """Take back an unacknowledged batch whose stream became local-only.

        Its records return to the unbatched pool; ``seq`` is never used again.
        """
        with self._transaction() as conn:
            conn.execute("DELETE FROM batches WHERE seq = ? AND acked = 0", (seq,))
            conn.execute(
                "UPDATE records SET batch_seq = NULL WHERE batch_seq = ? AND synced = 0", (seq,)
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
        gone = "(synced = 1 OR batch_seq IS NULL)" if local_only else "synced = 1"
        with self._transaction() as conn:
            removed = delete_counted(
                conn, f"stream = ? AND ts < ? AND {gone}", (stream, older_than_ts)
            )
            deleted = removed.get(stream, (0, 0))[0]
            overdue = conn.execute(
                "SELECT COUNT(*) FROM records WHERE stream = ? AND ts < ? AND synced = 0",
                (stream, older_than_ts),
            ).fetchone()[0]
            bump(conn, "records_expired", deleted)
            bump_stream(conn, stream, expired=deleted)
        return deleted, int(overdue)

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
                conn.execute("UPDATE records SET synced = 1 WHERE batch_seq = ?", (seq,))
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
                    "SELECT stream, COUNT(*), MIN(ts) FROM records WHERE synced = 0 GROUP BY stream"
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
