"""The central lake: one Delta table per stream, exactly-once commits, DuckDB queries.

Every edge batch becomes one Delta commit that carries its idempotency key as an application
transaction ``(app_id=device_id, version=batch_seq)``. A device sends its batches strictly in
sequence, so a batch whose sequence number is not above the device's recorded transaction
version has already been committed: the lake is exactly-once by construction, even across
restarts, because the key lives in the table's own log. Table versions give time travel, so a
training run can name exactly the rows it read.

The lake lives in a local folder or under an ``s3://bucket/prefix`` (``lake_storage``). Several
processes (cloud replicas) may commit to one table at once: Delta's optimistic concurrency
retries appends that do not conflict, and two commits of the same ``(device, seq)`` conflict on
the device's transaction, so the loser re-reads the log, finds the batch committed and answers
it as a repeat.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from hybridai.cloud.data.lake_storage import LakeLocation, LakeStorageError, S3Options
from hybridai.protocol.policy import STREAM_PATTERN
from hybridai.protocol.sync import DATE, DEVICE_ID, RECORD_ID, SITE, TIMESTAMP

STREAM_RE = re.compile(STREAM_PATTERN)  # a lake table per stream, a DuckDB view by its name
REQUIRED_COLUMNS: tuple[str, ...] = (RECORD_ID, DEVICE_ID, SITE, TIMESTAMP, DATE)
PARTITION_COLUMNS: list[str] = [SITE, DATE]
DEFAULT_VACUUM_HOURS = 168.0  # Delta's own default: a week of time travel
COMMIT_ATTEMPTS = 12  # tries of one batch's commit against writers in other processes


class LakeQueryError(ValueError):
    """A lake query failed; the message is DuckDB's (or says which version is missing)."""


class LakeSchemaError(ValueError):
    """A batch's columns do not fit the stream's table; the message names no value."""


# Fits a batch to the table's schema (None: no table yet), or raises ``LakeSchemaError``
Fitter = Callable[[pa.Schema | None], pa.Table]


class LakeConflictError(RuntimeError):
    """A batch lost every commit race to other writers: nothing was written; send it again."""


def _check_stream(stream: str) -> None:
    if not STREAM_RE.fullmatch(stream):
        raise ValueError(
            f"stream name {stream!r} is invalid: use 1-63 lowercase letters, digits or "
            "underscores, starting with a letter"
        )


def _is_text(column: pa.ChunkedArray) -> bool:
    return bool(pa.types.is_string(column.type) or pa.types.is_large_string(column.type))


def _check_batch(device_id: str, batch_seq: int, table: pa.Table) -> None:
    if batch_seq < 1:
        raise ValueError(f"batch_seq must be >= 1, got {batch_seq}")
    if table.num_rows == 0:
        raise ValueError("a batch must hold at least one record")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(
            f"batch lacks required column(s) {', '.join(missing)}; every lake row carries "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    column = table.column(DEVICE_ID)
    same_device = _is_text(column) and pc.all(pc.equal(column, device_id)).as_py() is not False
    if column.null_count or not same_device:
        raise ValueError(
            f"every row's {DEVICE_ID} must be {device_id!r}: a device commits only its own records"
        )
    for name in PARTITION_COLUMNS:
        if not _is_text(table.column(name)) or table.column(name).null_count:
            raise ValueError(f"partition column {name!r} must hold strings, never null")


def retyped(values: list[object], data_type: pa.DataType) -> tuple[list[object], list[bool]]:
    """``values`` converted to ``data_type`` where exact, and per value whether it was.

    Strings parse as numbers or booleans (``true``/``false``); integral numbers become
    integers; anything becomes a string (JSON text for non-strings, as the edge sends them).
    """
    out: list[object] = []
    fits: list[bool] = []
    for value in values:
        converted: object = None
        ok = True
        if value is not None:
            try:
                converted = _convert(value, data_type)
            except (TypeError, ValueError, OverflowError):
                ok = False
        out.append(converted)
        fits.append(ok)
    return out, fits


def _convert(value: object, data_type: pa.DataType) -> object:
    if pa.types.is_string(data_type):
        return value if isinstance(value, str) else json.dumps(value)
    if pa.types.is_boolean(data_type):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("not a boolean")
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    number = float(value) if isinstance(value, str | int | float) else float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    if pa.types.is_integer(data_type):
        if not number.is_integer():
            raise ValueError("not an integer")
        return int(value) if isinstance(value, int) else int(number)
    return number


class Lake:
    """Delta tables under ``root``: a local folder, ``file:///PATH`` or ``s3://BUCKET/PREFIX``.

    Commits to one stream are serialised inside this process, which makes the check of the
    device's last committed sequence and the commit that follows it atomic here. Writers in
    other processes are handled by Delta's optimistic concurrency (see the module docstring).
    Storage failures raise ``LakeStorageError`` (an ``OSError``) saying where and why.
    """

    def __init__(self, root: str, s3: S3Options | None = None) -> None:
        self._location = LakeLocation(root, s3)
        self._location.prepare()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"Lake({self._location.root!r})"

    @property
    def root(self) -> str:
        return self._location.root

    # -- locations: the one place that knows how a stream maps to storage ------------------

    def _uri(self, stream: str) -> str:
        return self._location.uri(stream)

    @contextmanager
    def _storage(self, doing: str) -> Iterator[None]:
        try:
            yield
        except LakeStorageError:
            raise
        except OSError as error:
            raise self._location.storage_error(doing, error) from error

    def _open(self, stream: str, version: int | None = None) -> DeltaTable | None:
        with self._storage(f"opening stream {stream!r}"):
            try:
                return DeltaTable(
                    self._uri(stream),
                    version=version,
                    storage_options=self._location.storage_options,
                )
            except TableNotFoundError:
                return None

    def _lock(self, stream: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(stream, threading.Lock())

    # -- writes -----------------------------------------------------------------------------

    def commit_batch(
        self,
        stream: str,
        device_id: str,
        batch_seq: int,
        table: pa.Table,
        fit: Fitter | None = None,
    ) -> tuple[int, bool]:
        """Append a device's batch as one commit; returns ``(table_version, duplicate)``.

        A batch whose ``batch_seq`` is not above the device's last committed one is a repeat
        and is answered with the current version without writing anything. The version
        returned is one that holds the batch (a later writer may already have added to it).
        ``fit`` turns the batch into what is committed, given the table's schema as read for
        this very commit (None: no table yet), or raises ``LakeSchemaError``.
        Raises ``ValueError`` for a batch that does not fit the stream and
        ``LakeConflictError`` when other writers kept winning the commit race.
        """
        _check_stream(stream)
        _check_batch(device_id, batch_seq, table)
        for attempt in range(COMMIT_ATTEMPTS):
            with self._lock(stream):
                done = self._try_commit(stream, device_id, batch_seq, table, fit)
            if done is not None:
                return done
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # let the winner finish
        raise LakeConflictError(
            f"batch {batch_seq} of device {device_id!r} lost {COMMIT_ATTEMPTS} commit races "
            f"on stream {stream!r} to other writers; nothing was written: send it again"
        )

    def _try_commit(
        self,
        stream: str,
        device_id: str,
        batch_seq: int,
        table: pa.Table,
        fit: Fitter | None = None,
    ) -> tuple[int, bool] | None:
        """One attempt: the outcome, or ``None`` when another writer's commit won the race."""
        current = self._open(stream)
        if current is not None:
            committed = current.transaction_version(device_id)
            if committed is not None and committed >= batch_seq:
                return current.version(), True
        if fit is not None:
            table = fit(None if current is None else pa.schema(current.schema().to_arrow()))
        try:
            with self._storage(f"committing to stream {stream!r}"):
                write_deltalake(
                    self._uri(stream) if current is None else current,
                    table,
                    mode="append",
                    partition_by=PARTITION_COLUMNS,
                    schema_mode="merge",
                    storage_options=self._location.storage_options if current is None else None,
                    commit_properties=CommitProperties(
                        app_transactions=[Transaction(app_id=device_id, version=batch_seq)]
                    ),
                )
        except CommitFailedError:
            return None  # a concurrent commit conflicted (maybe this very batch): look again
        except (DeltaError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
            # Arrow's and Delta's texts quote the values they could not cast: name no value
            raise LakeSchemaError(
                f"batch does not fit stream {stream!r}: the lake refused its columns "
                f"({type(error).__name__})"
            ) from None
        written = current if current is not None else self._open(stream)
        assert written is not None  # the write above created the table
        return written.version(), False

    def committed_seq(self, stream: str, device_id: str) -> int | None:
        """The device's last batch sequence committed to the stream (None: none yet)."""
        _check_stream(stream)
        table = self._open(stream)
        return None if table is None else table.transaction_version(device_id)

    def version(self, stream: str) -> int:
        """The stream's current table version (-1: no table yet)."""
        _check_stream(stream)
        table = self._open(stream)
        return -1 if table is None else table.version()

    def apply_retention(self, stream: str, older_than_ts: float) -> int:
        """Delete the rows with ``ts`` before ``older_than_ts`` and vacuum their files.

        Returns the number of rows deleted. The vacuum removes the data files the deletion
        left behind at once (retention must remove the bytes, not only hide them), so time
        travel to table versions from before the deletion ends here. Device transactions stay
        in the log: exactly-once delivery is unaffected. Known residue: the Delta log's older
        commits keep per-file min/max column statistics until the log is cleaned up
        (``delta.logRetentionDuration``, 30 days by default).
        """
        _check_stream(stream)
        if not isinstance(older_than_ts, int | float) or older_than_ts != older_than_ts:
            raise ValueError(f"older_than_ts must be a number, got {older_than_ts!r}")
        with self._lock(stream):
            table = self._open(stream)
            if table is None:
                return 0
            with self._storage(f"applying retention to stream {stream!r}"):
                metrics = table.delete(f"{TIMESTAMP} < {float(older_than_ts)!r}")
                deleted = int(metrics.get("num_deleted_rows", 0) or 0)
                if deleted:
                    table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
            return deleted

    def retype(self, stream: str, types: Mapping[str, pa.DataType]) -> pa.Table | None:
        """Give columns the types a declared schema names; return the rows that cannot take them.

        The table is rewritten in one overwrite commit (device transactions stay in the log):
        each named column is converted value by value (``retyped``), and the rows holding a
        value that does not convert are left out and returned, for the caller to quarantine.
        None when the table does not exist or already has those types.
        """
        _check_stream(stream)
        with self._lock(stream):
            current = self._open(stream)
            if current is None:
                return None
            schema = pa.schema(current.schema().to_arrow())
            todo = {
                n: t for n, t in types.items() if n in schema.names and schema.field(n).type != t
            }
            if not todo:
                return None
            with self._storage(f"retyping stream {stream!r}"):
                original = current.to_pyarrow_table()
                data = original
                keep = pa.array([True] * data.num_rows)
                for name, data_type in todo.items():
                    values, fits = retyped(data.column(name).to_pylist(), data_type)
                    index = data.schema.get_field_index(name)
                    data = data.set_column(
                        index, pa.field(name, data_type), pa.array(values, type=data_type)
                    )
                    keep = pc.and_(keep, pa.array(fits))
                write_deltalake(
                    current,
                    data.filter(keep),
                    mode="overwrite",
                    schema_mode="overwrite",
                    partition_by=PARTITION_COLUMNS,
                )
            return original.filter(pc.invert(keep))

    # -- maintenance (``hybridai lake optimize`` / ``vacuum``) --------------------------------

    def optimize(self, stream: str) -> dict[str, int]:
        """Compact the stream's small files (one per edge batch) into few large ones.

        One commit that rewrites files, not rows: counts, values and device transactions are
        unchanged, and earlier versions still read their old files until ``vacuum`` removes
        them. Returns the new version and the files added and removed.
        """
        _check_stream(stream)
        with self._lock(stream):
            table = self._require(stream)
            with self._storage(f"compacting stream {stream!r}"):
                metrics = table.optimize.compact()
            return {
                "version": table.version(),
                "files_added": int(metrics.get("numFilesAdded", 0) or 0),
                "files_removed": int(metrics.get("numFilesRemoved", 0) or 0),
            }

    def vacuum(self, stream: str, retention_hours: float = DEFAULT_VACUUM_HOURS) -> dict[str, int]:
        """Delete data files that no version of the last ``retention_hours`` still needs.

        Time travel keeps working for versions younger than the retention; older versions
        whose files are gone can no longer be read (lineage naming them says so on read).
        Returns the current version and the number of files deleted.
        """
        _check_stream(stream)
        if not isinstance(retention_hours, int | float) or not 0 <= retention_hours < 1e6:
            raise ValueError(
                f"retention_hours must be a number of hours >= 0, got {retention_hours!r}"
            )
        with self._lock(stream):
            table = self._require(stream)
            with self._storage(f"vacuuming stream {stream!r}"):
                deleted = table.vacuum(
                    retention_hours=int(retention_hours),
                    dry_run=False,
                    enforce_retention_duration=False,
                )
            return {"version": table.version(), "files_deleted": len(deleted)}

    def files(self, stream: str) -> int:
        """Data files the stream's current version reads."""
        return len(self._require(stream).file_uris())

    def _require(self, stream: str) -> DeltaTable:
        table = self._open(stream)
        if table is None:
            raise LookupError(f"stream {stream!r} does not exist in the lake")
        return table

    # -- reads ------------------------------------------------------------------------------

    def arrow_schema(self, stream: str) -> pa.Schema | None:
        """The stream's columns and types; None for a stream that does not exist yet."""
        _check_stream(stream)
        table = self._open(stream)
        return None if table is None else pa.schema(table.schema().to_arrow())

    def columns(self, stream: str) -> list[str]:
        """The stream's column names; empty for a stream that does not exist yet."""
        _check_stream(stream)
        table = self._open(stream)
        return [] if table is None else [f.name for f in table.schema().fields]

    def streams(self) -> list[str]:
        """Names of the streams that hold at least one commit."""
        options = self._location.storage_options
        with self._storage("listing streams"):
            return [
                name
                for name in self._location.children()
                if STREAM_RE.fullmatch(name)
                and DeltaTable.is_deltatable(self._uri(name), storage_options=options)
            ]

    def versions(self) -> dict[str, int]:
        """Return the current table version of every stream: what lineage records."""
        versions: dict[str, int] = {}
        for name in self.streams():
            table = self._open(name)
            if table is not None:
                versions[name] = table.version()
        return versions

    def count(self, stream: str) -> int:
        """Rows in a stream; 0 for a stream that does not exist yet."""
        _check_stream(stream)
        table = self._open(stream)
        if table is None:
            return 0
        with self._storage(f"counting the rows of stream {stream!r}"):
            return int(table.to_pyarrow_dataset().count_rows())

    def query(self, sql: str, versions: Mapping[str, int] | None = None) -> pa.Table:
        """Run DuckDB SQL in which every stream is a view named after it, within limits.

        The default limits of ``lake_query`` apply (memory, time, rows; more rows than the cap
        is an error here).

        ``versions`` pins the named streams to those table versions (time travel); the others
        are read at their current version. The connection cannot touch files, so a query reads
        the lake's tables and nothing else.
        """
        from hybridai.cloud.data import lake_query  # it builds on this module

        result = lake_query.run_query(self, sql, versions=versions)
        if result.truncated:
            raise lake_query.QueryLimitExceeded(
                f"the query returns more than {result.table.num_rows} rows: aggregate or filter"
            )
        return result.table

    def arrow_dataset(self, stream: str, version: int | None = None) -> object:
        """The stream's table at a version as a pyarrow dataset, for DuckDB to scan."""
        if not STREAM_RE.fullmatch(stream):
            raise LakeQueryError(f"stream name {stream!r} is invalid")
        try:
            table = self._open(stream, version)
        except DeltaError as error:
            raise LakeQueryError(f"stream {stream!r} has no version {version}: {error}") from error
        if table is None:
            raise LakeQueryError(f"stream {stream!r} does not exist")
        return table.to_pyarrow_dataset()
