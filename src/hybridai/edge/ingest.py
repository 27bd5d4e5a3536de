"""The one door records take into the edge store, whatever carried them (HTTP, SDK, MQTT).

A batch is checked against its stream's schema, then stored all or nothing; only then does
its sender hear "accepted" (an HTTP 200, an MQTT PUBACK). Records that cannot be stored are
refused (HTTP) or parked in the ``dead_letters`` stream with the reason and the raw payload
(MQTT, where nobody waits for an answer): never dropped silently.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping
from typing import Any

from hybridai.edge.schema import SchemaRegistry, StreamSchema
from hybridai.edge.store import AppendResult, EdgeStore

DEAD_LETTERS = "dead_letters"
DEAD_LETTER_MAX_BYTES = 256 * 1024  # a bigger payload is kept truncated (and says so)


class Ingest:
    """Schema check + durable append, serialised so a schema learnt from a batch is atomic."""

    def __init__(self, store: EdgeStore, declared: Mapping[str, StreamSchema]) -> None:
        self.store = store
        self.schemas = SchemaRegistry(store, declared)
        self._lock = threading.Lock()

    def write(self, stream: str, records: list[dict[str, Any]]) -> AppendResult:
        """Store ``records`` durably or raise (``SchemaViolation``, ``InvalidRecord``).

        Nothing of a refused batch is stored. Durable once this returns.
        """
        with self._lock:
            grown = self.schemas.admit(stream, records)
            result = self.store.append(stream, records)
            if grown is not None:
                self.schemas.save(stream, grown)
        return result

    def dead_letter(self, source: str, reason: str, payload: bytes) -> None:
        """Park a message that could not be stored, durably, with why and what it was."""
        truncated = len(payload) > DEAD_LETTER_MAX_BYTES
        raw = payload[:DEAD_LETTER_MAX_BYTES]
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        record: dict[str, Any] = {
            "ts": time.time(),
            "topic": source,
            "reason": reason,
            "payload": text,
            "payload_encoding": encoding,
            "payload_bytes": len(payload),
            "truncated": truncated,
        }
        self.store.append(DEAD_LETTERS, [record])
