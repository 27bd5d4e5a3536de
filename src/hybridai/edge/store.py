"""The edge's local store: records kept on disk until the cloud has acknowledged them.

SQLite in WAL mode with ``synchronous=FULL``: when ``append`` returns, the records are on
stable storage and survive a crash or a power cut, so an edge may acknowledge them to the
sender. Records are grouped into sync batches whose sequence numbers are persistent and never
reused; a batch created before a crash is handed out again, record for record, until the cloud
acknowledges it, which is what makes ``(device_id, batch_seq)`` a sound idempotency key.

One connection, guarded by a lock, serves FastAPI worker threads and the asyncio sync loop
(through ``asyncio.to_thread``) alike. With a key, payloads are encrypted at rest and the
de-duplication hash is keyed (``hybridai.edge.store_crypto``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridai.edge.store_crypto import PayloadCipher, check_store_key
from hybridai.protocol.fleet import StoreStats
from hybridai.protocol.sync import DATE, DEVICE_ID, RECORD_ID, SITE, TIMESTAMP

STREAM_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
RESERVED_FIELDS = frozenset({RECORD_ID, DEVICE_ID, SITE, DATE})
_STREAM_RE = re.compile(STREAM_PATTERN)
_SCHEMA_VERSION = 1
_COUNTERS = (
    "records_ingested",
    "records_deduplicated",
    "records_synced",
    "batches_synced",
    "bytes_synced",
    "records_expired",
)
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


class InvalidRecord(ValueError):
    """A record the store refuses; the message names the record's index and the problem."""


@dataclass(frozen=True)
class AppendResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class StoredRecord:
    """A stored record: ``payload`` holds its own fields, ``ts`` excluded."""

    local_id: int
    ts: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class PendingBatch:
    """Records of one stream handed out for sync under sequence number ``seq``."""

    seq: int
    stream: str
    records: list[StoredRecord]


def _check_stream(stream: str) -> None:
    if not isinstance(stream, str) or not _STREAM_RE.match(stream):
        raise ValueError(f"stream name {stream!r} must match {STREAM_PATTERN}")


def _prepare(index: int, record: Any) -> tuple[float, str, bytes]:
    """Validate one record; return its ts, its payload JSON (ts excluded), its canonical JSON."""

    def bad(problem: str) -> InvalidRecord:
        return InvalidRecord(f"record {index}: {problem}")

    if not isinstance(record, dict):
        raise bad(f"must be a JSON object, got {type(record).__name__}")
    ts = record.get(TIMESTAMP)
    if TIMESTAMP not in record:
        raise bad(f"missing '{TIMESTAMP}' (seconds since the epoch)")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise bad(f"'{TIMESTAMP}' must be a finite number of seconds, got {ts!r}")
    try:
        datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise bad(f"'{TIMESTAMP}' {ts!r} is out of range for a date") from None
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str) or not key:
            raise bad(f"field names must be non-empty strings, got {key!r}")
        if key in RESERVED_FIELDS:
            raise bad(f"field '{key}' is reserved for the lake; rename it")
        if isinstance(value, dict | list | tuple):
            raise bad(f"field '{key}' is nested; records must be flat")
        if value is not None and not isinstance(value, str | int | float):
            raise bad(f"field '{key}' has unsupported type {type(value).__name__}")
        if key != TIMESTAMP:
            fields[key] = value
    ts = float(ts)
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    canonical = json.dumps(
        {**fields, TIMESTAMP: ts}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    try:
        return ts, payload, canonical.encode()
    except UnicodeEncodeError:
        raise bad("holds a string that is not valid Unicode") from None


class EdgeStore:
    """Durable, de-duplicating record store with resumable sync batches."""

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cipher = PayloadCipher(key) if key is not None else None
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has store schema {version}; this agent knows up to "
                    f"{_SCHEMA_VERSION}: upgrade the agent"
                )
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            self._conn.executemany(
                "INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)",
                [(name,) for name in _COUNTERS],
            )
            self._check_key()
        except BaseException:
            self._conn.close()
            raise

    def _check_key(self) -> None:
        check_store_key(self._conn, self._cipher, self.path)

    def _hash(self, content: bytes) -> bytes:
        if self._cipher is None:
            return hashlib.sha256(content).digest()
        return self._cipher.record_hash(content)

    def _seal(self, stream: str, ts: float, payload: str) -> str | bytes:
        return payload if self._cipher is None else self._cipher.seal(stream, ts, payload)

    def _records(self, stream: str, rows: list[tuple[int, float, Any]]) -> list[StoredRecord]:
        if self._cipher is None:
            return _to_records(rows)
        opened = [(i, ts, self._cipher.open(stream, ts, p)) for i, ts, p in rows]
        return _to_records(opened)

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _bump(self, name: str, by: int) -> None:
        self._conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))

    def append(self, stream: str, records: list[dict[str, Any]]) -> AppendResult:
        """Store ``records`` all or nothing; durable when this returns.

        A record whose content (with its stream) is already stored counts as a duplicate.
        """
        _check_stream(stream)
        prepared = [_prepare(i, r) for i, r in enumerate(records)]
        if not prepared:
            return AppendResult(accepted=0, duplicates=0)
        prefix = stream.encode() + b"\0"
        accepted = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for ts, payload, canonical in prepared:
                    cursor = self._conn.execute(
                        "INSERT OR IGNORE INTO records (stream, hash, ts, payload) "
                        "VALUES (?, ?, ?, ?)",
                        (
                            stream,
                            self._hash(prefix + canonical),
                            ts,
                            self._seal(stream, ts, payload),
                        ),
                    )
                    accepted += cursor.rowcount
                duplicates = len(prepared) - accepted
                self._bump("records_ingested", accepted)
                self._bump("records_deduplicated", duplicates)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return AppendResult(accepted=accepted, duplicates=duplicates)

    def next_batch(
        self,
        max_records: int = 5000,
        max_bytes: int = 4_000_000,
        skip_streams: frozenset[str] = frozenset(),
    ) -> PendingBatch | None:
        """Return the batch to send now, or None when nothing is waiting.

        An unacknowledged batch is returned again unchanged (whatever the limits), so a resend
        after a crash carries the same records. Otherwise the stream holding the oldest
        unbatched record (by arrival) gets the next sequence number. ``max_bytes`` bounds the
        payloads' JSON size; a batch always holds at least one record. Streams in
        ``skip_streams`` (local-only by policy) never get a new batch.
        """
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be >= 1")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                batch = self._pending() or self._new_batch(max_records, max_bytes, skip_streams)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return batch

    def _pending(self) -> PendingBatch | None:
        row = self._conn.execute(
            "SELECT seq, stream FROM batches WHERE acked = 0 ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        seq, stream = row
        rows = self._conn.execute(
            "SELECT id, ts, payload FROM records WHERE batch_seq = ? ORDER BY id", (seq,)
        ).fetchall()
        return PendingBatch(seq=seq, stream=stream, records=self._records(stream, rows))

    def _new_batch(
        self, max_records: int, max_bytes: int, skip: frozenset[str]
    ) -> PendingBatch | None:
        marks = ",".join("?" * len(skip))
        row = self._conn.execute(
            "SELECT stream FROM records WHERE batch_seq IS NULL "
            + (f"AND stream NOT IN ({marks}) " if skip else "")
            + "ORDER BY id LIMIT 1",
            sorted(skip),
        ).fetchone()
        if row is None:
            return None
        stream = row[0]
        candidates = self._conn.execute(
            "SELECT id, ts, payload FROM records WHERE stream = ? AND batch_seq IS NULL "
            "ORDER BY id LIMIT ?",
            (stream, max_records),
        ).fetchall()
        taken: list[tuple[int, float, str]] = []
        size = 0
        for candidate in candidates:
            size += len(candidate[2]) + 32  # the ts and framing, roughly
            if taken and size > max_bytes:
                break
            taken.append(candidate)
        cursor = self._conn.execute(
            "INSERT INTO batches (stream, records, created_at) VALUES (?, ?, ?)",
            (stream, len(taken), time.time()),
        )
        seq = cursor.lastrowid
        assert seq is not None
        self._conn.execute(
            "UPDATE records SET batch_seq = ? WHERE stream = ? AND batch_seq IS NULL AND id <= ?",
            (seq, stream, taken[-1][0]),
        )
        return PendingBatch(seq=seq, stream=stream, records=self._records(stream, taken))

    def withdraw_batch(self, seq: int) -> None:
        """Take back an unacknowledged batch whose stream became local-only.

        Its records return to the unbatched pool; ``seq`` is never used again.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM batches WHERE seq = ? AND acked = 0", (seq,))
                self._conn.execute(
                    "UPDATE records SET batch_seq = NULL WHERE batch_seq = ? AND synced = 0", (seq,)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def expire(
        self, stream: str, older_than_ts: float, local_only: bool = False
    ) -> tuple[int, int]:
        """Apply retention to ``stream``: delete its synced records older than the cutoff.

        Unsynced records are never deleted silently: they are kept and counted as overdue,
        except for a local-only stream (restricted by policy), whose records never sync and
        expire like synced ones. Returns ``(deleted, overdue)``.
        """
        _check_stream(stream)
        gone = "(synced = 1 OR batch_seq IS NULL)" if local_only else "synced = 1"
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._conn.execute(
                    f"DELETE FROM records WHERE stream = ? AND ts < ? AND {gone}",
                    (stream, older_than_ts),
                ).rowcount
                overdue = self._conn.execute(
                    "SELECT COUNT(*) FROM records WHERE stream = ? AND ts < ? AND synced = 0",
                    (stream, older_than_ts),
                ).fetchone()[0]
                self._bump("records_expired", deleted)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return deleted, int(overdue)

    def mark_synced(self, seq: int, wire_bytes: int) -> None:
        """Record the cloud's acknowledgement of batch ``seq``; repeating it changes nothing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT acked, records FROM batches WHERE seq = ?", (seq,)
                ).fetchone()
                if row is None:
                    raise ValueError(f"no batch {seq} was handed out by this store")
                acked, count = row
                if not acked:
                    self._conn.execute(
                        "UPDATE batches SET acked = 1, wire_bytes = ? WHERE seq = ?",
                        (wire_bytes, seq),
                    )
                    self._conn.execute("UPDATE records SET synced = 1 WHERE batch_seq = ?", (seq,))
                    self._bump("records_synced", count)
                    self._bump("batches_synced", 1)
                    self._bump("bytes_synced", wire_bytes)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def stats(
        self, now: float | None = None, local_only: frozenset[str] = frozenset()
    ) -> StoreStats:
        """Counters since the store was created, and the backlog as of ``now``.

        Records of ``local_only`` streams are counted apart: they are not a backlog.
        """
        now = time.time() if now is None else now
        marks = ",".join("?" * len(local_only))
        with self._lock:
            counters = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
            backlog, oldest = self._conn.execute(
                "SELECT COUNT(*), MIN(ts) FROM records WHERE synced = 0"
                + (f" AND stream NOT IN ({marks})" if local_only else ""),
                sorted(local_only),
            ).fetchone()
            local = 0
            if local_only:
                local = self._conn.execute(
                    f"SELECT COUNT(*) FROM records WHERE synced = 0 AND stream IN ({marks})",
                    sorted(local_only),
                ).fetchone()[0]
        return StoreStats(
            records_ingested=counters["records_ingested"],
            records_synced=counters["records_synced"],
            records_deduplicated=counters["records_deduplicated"],
            backlog_records=backlog,
            oldest_unsynced_age_s=None if oldest is None else max(0.0, now - oldest),
            batches_synced=counters["batches_synced"],
            bytes_synced=counters["bytes_synced"],
            records_expired=counters["records_expired"],
            local_only_records=local,
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


def _to_records(rows: list[tuple[int, float, str]]) -> list[StoredRecord]:
    return [StoredRecord(local_id=i, ts=ts, payload=json.loads(p)) for i, ts, p in rows]
