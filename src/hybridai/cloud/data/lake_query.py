"""Bounded lake queries: memory, time and rows per query, and only the streams one may read.

A lake query is SQL from a person, run inside the cloud process: without bounds one query can
pin the process at gigabytes or keep a core busy for minutes after its client left. DuckDB
counts its own operators' memory against ``memory_limit`` and stops at ``interrupt()``; the
result is read batch by batch and stops one row past the cap, so neither a huge result nor a
long scan outlives its limits. Only the streams the caller may read are registered as views,
so a query cannot name another one (DuckDB binds names before it runs anything).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from hybridai.cloud.data.lake import Lake, LakeQueryError

_MISSING_TABLE = re.compile(r"Table with name (\w+) does not exist", re.IGNORECASE)


@dataclass(frozen=True)
class QueryLimits:
    """What one query may use; the defaults are ``CloudSettings.lake_query_*``."""

    memory_mb: int = 512
    timeout_s: float = 60.0
    max_rows: int = 1_000_000
    threads: int = 1


class QueryLimitExceeded(LakeQueryError):
    """The query needed more memory or time than its limits allow, or was cancelled."""


class StreamNotGranted(LakeQueryError):
    """The query names a stream the caller holds no read grant on."""

    def __init__(self, stream: str) -> None:
        super().__init__(
            f"you hold no read grant on stream {stream!r}: ask an admin to run "
            f"`hybridai lake grant {stream} --user YOU` (or --role ROLE)"
        )
        self.stream = stream


@dataclass
class QueryResult:
    table: pa.Table
    truncated: bool


class QueryHandle:
    """Lets another thread stop a running query (client gone, shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self.cancelled = False
        self.timed_out = False

    def _attach(self, connection: duckdb.DuckDBPyConnection | None) -> None:
        with self._lock:
            self._connection = connection
            if connection is not None and self.cancelled:
                connection.interrupt()

    def cancel(self, timed_out: bool = False) -> None:
        with self._lock:
            self.cancelled = True
            self.timed_out = self.timed_out or timed_out
            if self._connection is not None:
                self._connection.interrupt()


def run_query(
    lake: Lake,
    sql: str,
    *,
    readable: Collection[str] | None = None,
    versions: Mapping[str, int] | None = None,
    limits: QueryLimits | None = None,
    max_rows: int | None = None,
    handle: QueryHandle | None = None,
) -> QueryResult:
    """Run ``sql`` over the streams in ``readable`` (None: all) within ``limits``.

    ``max_rows`` (at most ``limits.max_rows``) caps the rows returned; ``truncated`` says
    whether more were there. Raises ``StreamNotGranted`` for a stream outside ``readable``
    that exists, ``QueryLimitExceeded`` past memory or time, ``LakeQueryError`` otherwise.
    """
    limits = limits or QueryLimits()
    cap = min(max_rows or limits.max_rows, limits.max_rows)
    handle = handle or QueryHandle()
    pinned = dict(versions or {})
    existing = set(lake.streams())
    names = existing | set(pinned) if readable is None else set(readable) & (existing | set(pinned))
    connection = duckdb.connect(
        config={
            "enable_external_access": False,
            "memory_limit": f"{limits.memory_mb}MB",
            "threads": limits.threads,
            "max_temp_directory_size": "0B",
        }
    )
    finished = threading.Event()
    watchdog = threading.Thread(
        target=_watch, args=(handle, finished, limits.timeout_s), daemon=True, name="lake-query"
    )
    try:
        for name in sorted(names):
            connection.register(name, lake.arrow_dataset(name, pinned.get(name)))
        connection.execute("SET lock_configuration = true")
        handle._attach(connection)
        watchdog.start()
        try:
            relation = connection.sql(sql)
        except duckdb.CatalogException as error:
            missing = _MISSING_TABLE.search(str(error))
            if missing and missing.group(1) in existing - names:
                raise StreamNotGranted(missing.group(1)) from None
            raise
        if relation is None:
            raise LakeQueryError("the SQL ran but returned no rows: send a query")
        return _read_capped(relation, cap)
    except duckdb.InterruptException:
        raise _stopped(handle, limits) from None
    except duckdb.OutOfMemoryException:
        raise QueryLimitExceeded(
            f"the query needs more than its {limits.memory_mb} MB memory limit: select fewer "
            "columns, filter earlier or aggregate (LAKE_QUERY_MEMORY_MB sets the limit)"
        ) from None
    except duckdb.Error as error:
        if handle.cancelled:
            raise _stopped(handle, limits) from None
        raise LakeQueryError(str(error)) from error
    finally:
        finished.set()
        handle._attach(None)
        connection.close()


def _watch(handle: QueryHandle, finished: threading.Event, timeout_s: float) -> None:
    """Interrupt the query past its deadline or once cancelled, and again until it ends.

    DuckDB drops an interrupt that arrives while no statement runs (between binding and
    execution), so one interrupt is not enough: repeat it until the query has stopped.
    """
    deadline = time.monotonic() + timeout_s
    while not finished.wait(0.2):
        if time.monotonic() >= deadline:
            handle.cancel(timed_out=True)
        elif handle.cancelled:
            handle.cancel()


def check_readable(lake: Lake, sql: str, readable: Collection[str] | None) -> None:
    """Refuse SQL that names a stream outside ``readable`` (DuckDB binds, reads no rows)."""
    if readable is not None:
        run_query(lake, f"SELECT * FROM ({sql}) AS checked LIMIT 0", readable=readable)


def _read_capped(relation: duckdb.DuckDBPyRelation, cap: int) -> QueryResult:
    reader = relation.to_arrow_reader(batch_size=min(cap + 1, 65_536))
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows > cap:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema)
    return QueryResult(table.slice(0, cap), truncated=rows > cap)


def _stopped(handle: QueryHandle, limits: QueryLimits) -> QueryLimitExceeded:
    if handle.timed_out:
        return QueryLimitExceeded(
            f"the query ran past its {limits.timeout_s:g} s time limit and was stopped: "
            "filter earlier or aggregate (LAKE_QUERY_TIMEOUT_S sets the limit)"
        )
    return QueryLimitExceeded("the query was cancelled (its client went away)")
