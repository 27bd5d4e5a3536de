"""The sync uploader: moves the store's backlog to the cloud, one batch at a time, in order.

Delivery is at-least-once on the wire: a batch is marked synced only after the sink returned
the cloud's acknowledgement for that very sequence number; until then the same bytes are sent
again (after a failure, a restart or a crash). The cloud makes it exactly-once in the lake.
The sink hides the transport (HTTP client, simulator, test double).

Data policies are applied here, on the way out: a batch is redacted (restricted fields dropped,
personal ones pseudonymised or dropped) just before it is encoded, while the store keeps the
original; a stream restricted as a whole is never batched at all. Dead letters and hard
examples also obey the policy of the stream their data came from (``governance.egress``).

A batch the cloud quarantines (its columns do not fit the stream's lake table) is in the
cloud all the same: it counts as synced, and ``quarantined`` / ``last_quarantine`` say so.

The live sync loop is ``sync_step`` repeated by the agent's loop supervisor
(``hybridai.observability.supervisor``), which restarts it with backoff after any failure: a
cloud outage as much as an SQLite I/O error never ends syncing for good.

Two gates thin links need: a bandwidth cap (a token bucket in bytes/s: a batch waits until
the bucket allows it, so the average rate holds to the cap) and a time-of-day window outside
which only high-priority streams sync (``hybridai.edge.sync.window``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from hybridai.edge.ingest.intake import DEAD_LETTERS
from hybridai.edge.routing.hard_examples import STREAM as HARD_EXAMPLES
from hybridai.edge.store.config import HIGH, LOW
from hybridai.edge.store.edge_store import EdgeStore, PendingBatch, StoredRecord
from hybridai.edge.sync.batches import EncodedBatch, encode_batch
from hybridai.edge.sync.window import SyncWindow
from hybridai.governance import egress
from hybridai.governance.policies import local_only, redact
from hybridai.link.token_bucket import TokenBucket
from hybridai.observability.supervisor import describe
from hybridai.protocol.policy import DataPolicy
from hybridai.protocol.sync import BatchAck

log = logging.getLogger(__name__)
# Streams that carry another stream's data inside a field: that stream's policy applies too
_ORIGIN = {DEAD_LETTERS: egress.dead_letter, HARD_EXAMPLES: egress.hard_example}


class SyncError(Exception):
    """A transient failure to deliver a batch: retry later with the same bytes."""


class BatchSink(Protocol):
    async def put_batch(self, batch: EncodedBatch) -> BatchAck:
        """Deliver one batch and return the cloud's ack; raise SyncError on any failure."""
        ...


class Uploader:
    """Drains an ``EdgeStore`` into a ``BatchSink``, strictly in batch sequence."""

    def __init__(
        self,
        store: EdgeStore,
        sink: BatchSink,
        device_id: str,
        site: str,
        *,
        max_records: int = 5000,
        policies: Callable[[], Mapping[str, DataPolicy]] = dict,
        site_key: bytes | None = None,
        bandwidth: Callable[[], float | None] = lambda: None,
        window: Callable[[], SyncWindow | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        ready: Callable[[], bool] = lambda: True,
        interval: Callable[[], float] = lambda: 1.0,
        on_synced: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.sink = sink
        self.device_id = device_id
        self.site = site
        self.max_records = max_records
        self.policies = policies  # the current policies, per stream (from the desired state)
        self.site_key = site_key or secrets.token_bytes(32)  # keys pseudonyms; never leaves
        self.last_error: str | None = None  # the most recent failure, kept for operators
        self.consecutive_failures = 0
        self.bandwidth = bandwidth  # the cap in bytes/s, or None (read before every batch)
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.ready = ready  # whether batches may leave yet (the policies are known)
        self.interval = interval  # the pause between drains, read after each one
        self.on_synced = on_synced  # told after every drain that reached the cloud
        self._bucket: TokenBucket | None = None
        self.throughput = (0.0, 0.0)  # (bytes/s, records/s) over the last drain that sent
        self.stream_throughput: dict[str, tuple[float, float]] = {}  # the same, per stream
        self.quarantined = 0  # batches the cloud kept apart from the lake (column types)
        self.last_quarantine: str | None = None  # "stream: the cloud's reason"

    async def _throttle(self, size: int) -> None:
        rate = self.bandwidth()
        if rate is None:
            self._bucket = None
            return
        now = self.clock()
        if self._bucket is None:
            self._bucket = TokenBucket(rate, now=now)
        elif self._bucket.rate != rate:
            self._bucket.set_rate(rate, now)
        delay = self._bucket.reserve(size, now)
        if delay > 0:
            await self.sleep(delay)

    async def drain(self) -> int:
        """Send batches until the backlog is empty; return how many were acknowledged.

        Raises SyncError at the first failure, leaving that batch pending for the next try.
        """
        sent = sent_bytes = sent_records = 0
        started = self.clock()
        per_stream: dict[str, list[float]] = {}  # stream -> [bytes, records, seconds]
        try:
            while True:
                batch_started = self.clock()
                policies = dict(self.policies())
                local = frozenset(d for d, p in policies.items() if local_only(p))
                window = self.window()
                closed = window is not None and not window.open_now(time.time())
                pending = await asyncio.to_thread(
                    self.store.next_batch,
                    self.max_records,
                    skip_streams=local,
                    min_priority=HIGH if closed else LOW,
                    max_wait_s=self.store.config.batch_max_wait_s,
                )
                if pending is None:
                    break
                if pending.stream in local:  # batched before its policy said restricted
                    await asyncio.to_thread(self.store.withdraw_batch, pending.seq)
                    continue
                pending = self._redacted(pending, policies)
                encoded = await asyncio.to_thread(encode_batch, pending, self.device_id, self.site)
                await self._throttle(len(encoded.body))
                ack = await self.sink.put_batch(encoded)
                if ack.batch_seq != encoded.seq or ack.device_id != self.device_id:
                    raise SyncError(
                        f"ack for {ack.device_id}:{ack.batch_seq} answered batch "
                        f"{self.device_id}:{encoded.seq}"
                    )
                if ack.quarantined:  # in the cloud, kept apart from the lake: move on
                    self.quarantined += 1
                    self.last_quarantine = f"{encoded.stream}: {ack.reason}"
                    log.warning(
                        "batch %d (%s) quarantined by the cloud: %s",
                        encoded.seq,
                        encoded.stream,
                        ack.reason,
                    )
                await asyncio.to_thread(self.store.mark_synced, encoded.seq, len(encoded.body))
                sent += 1
                sent_bytes += len(encoded.body)
                sent_records += encoded.records
                tally = per_stream.setdefault(encoded.stream, [0.0, 0.0, 0.0])
                tally[0] += len(encoded.body)
                tally[1] += encoded.records
                tally[2] += self.clock() - batch_started
        except Exception as exc:  # the batch stays pending; the loop retries it
            transient = isinstance(exc, SyncError)
            self.last_error = (str(exc) or type(exc).__name__) if transient else describe(exc)
            self.consecutive_failures += 1
            raise
        self.consecutive_failures = 0
        if sent:
            elapsed = max(self.clock() - started, 1e-6)
            self.throughput = (sent_bytes / elapsed, sent_records / elapsed)
            for stream, (size, records, seconds) in per_stream.items():
                seconds = max(seconds, 1e-6)  # the time its batches took: cut, send, ack
                self.stream_throughput[stream] = (size / seconds, records / seconds)
        return sent

    def _redacted(self, batch: PendingBatch, policies: Mapping[str, DataPolicy]) -> PendingBatch:
        """The batch as it may leave the site, per its stream's policy.

        Dead letters and hard examples also obey the policy of their data's own stream.
        """
        policy = policies.get(batch.stream)
        origin = _ORIGIN.get(batch.stream)
        if policy is None and origin is None:
            return batch
        records = []
        for r in batch.records:
            payload = r.payload if origin is None else origin(r.payload, policies, self.site_key)
            if policy is not None:
                payload = redact(policy, self.site_key, payload)
            records.append(StoredRecord(r.local_id, r.ts, payload))
        return PendingBatch.of_records(batch.seq, batch.stream, records)

    async def sync_step(self) -> float:
        """One run of the sync loop: drain the backlog; return the pause before the next run.

        Failures propagate: the loop supervisor counts them, backs off and runs this again.
        """
        if not self.ready():  # no batch leaves before the policies are known
            return 0.5
        await self.drain()
        self.on_synced()
        return self.interval()
