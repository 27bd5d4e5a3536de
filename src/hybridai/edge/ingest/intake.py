"""The one door records take into the edge store, whatever carried them (HTTP, SDK, MQTT).

A batch is turned into columns and checked (``columns``), hashed and encoded in its caller's
thread, then checked against its stream's schema (``schema_columns``) and stored all or
nothing, with the batches of concurrent callers in one transaction (``group_commit``); only
then does its sender hear "accepted" (an HTTP 200, an MQTT PUBACK). Records that cannot be
stored are refused (HTTP) or parked in the ``dead_letters`` stream with the reason and the raw
payload (MQTT, where nobody waits for an answer): never dropped silently.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hybridai.edge.ingest.group_commit import GroupCommit
from hybridai.edge.ingest.schema_columns import admit_table
from hybridai.edge.ingest.schemas import SchemaRegistry, StreamSchema
from hybridai.edge.store import columns
from hybridai.edge.store.edge_store import AppendResult, EdgeStore
from hybridai.edge.store.records import check_stream
from hybridai.protocol.streams import SchemaSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from hybridai.edge.store._append import Prepared

DEAD_LETTERS = "dead_letters"
DEAD_LETTER_MAX_BYTES = 256 * 1024  # a bigger payload is kept truncated (and says so)


@dataclass(frozen=True)
class _Batch:
    stream: str
    table: pa.Table
    records: list[dict[str, Any]] | None  # what the table was made of, for precise errors
    prepared: Prepared | None  # hashed and encoded in the caller's thread


class Ingest:
    """Schema check + durable append, serialised so a schema learnt from a batch is atomic."""

    def __init__(self, store: EdgeStore, declared: Mapping[str, StreamSchema]) -> None:
        self.store = store
        self.schemas = SchemaRegistry(store, declared)
        self._lock = threading.Lock()
        self._commits: GroupCommit[_Batch, AppendResult] = GroupCommit(self._commit)

    def write(self, stream: str, records: list[dict[str, Any]]) -> AppendResult:
        """Store ``records`` durably or raise (``SchemaViolation``, ``InvalidRecord``).

        Nothing of a refused batch is stored. Durable once this returns.
        """
        check_stream(stream)
        return self._write(stream, columns.from_records(records), records)

    def write_table(self, stream: str, table: pa.Table) -> AppendResult:
        """``write`` for records a producer sent as Arrow columns."""
        check_stream(stream)
        return self._write(stream, columns.from_arrow(table))

    def _write(
        self, stream: str, table: pa.Table, records: list[dict[str, Any]] | None = None
    ) -> AppendResult:
        prepared = self.store.prepare(stream, table) if table.num_rows else None
        return self._commits.submit(_Batch(stream, table, records, prepared))

    def _commit(self, batches: list[_Batch]) -> list[AppendResult | BaseException]:
        """Admit and append ``batches`` in one transaction; one outcome each.

        A batch refused (schema, record) or failing leaves nothing behind and the others go
        on; a schema a batch grows is saved with it, so the next batch (in this group too)
        is checked against it.
        """
        outcomes: list[AppendResult | BaseException] = []
        grown: set[str] = set()
        with self._lock:
            try:
                with self.store.group() as group:
                    for batch in batches:
                        try:
                            with group.batch():
                                schema = admit_table(
                                    self.schemas, batch.stream, batch.table, batch.records
                                )
                                result = group.append(batch.stream, batch.table, batch.prepared)
                                if schema is not None:
                                    self.schemas.save(batch.stream, schema)
                                    grown.add(batch.stream)
                        except Exception as exc:  # this batch's alone: nothing of it stays
                            outcomes.append(exc)
                            continue
                        outcomes.append(result)
            except BaseException:
                self.schemas.forget(grown)  # saved in a transaction that did not commit
                raise
        return outcomes

    def declare_schema(self, stream: str, spec: SchemaSpec) -> StreamSchema:
        """Enforce the cloud's schema for ``stream`` from the next batch on (``SchemaConflict``)."""
        with self._lock:
            return self.schemas.declare(stream, spec)

    def withdraw_schemas(self, keep: Iterable[str]) -> list[str]:
        """Stop enforcing cloud schemas of streams not in ``keep``; return those streams."""
        with self._lock:
            return self.schemas.withdraw(keep)

    def dead_letter(
        self, source: str, reason: str, payload: bytes, stream: str | None = None
    ) -> None:
        """Park a message that could not be stored, durably, with why and what it was.

        ``stream`` is the stream it was meant for: that stream's data policy decides what of
        the payload may leave the site (``governance.egress``).
        """
        truncated = len(payload) > DEAD_LETTER_MAX_BYTES
        raw = payload[:DEAD_LETTER_MAX_BYTES]
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        record: dict[str, Any] = {
            "ts": time.time(),
            "topic": source,
            "stream": stream or "",
            "reason": reason,
            "payload": text,
            "payload_encoding": encoding,
            "payload_bytes": len(payload),
            "truncated": truncated,
        }
        self.store.append(DEAD_LETTERS, [record])
