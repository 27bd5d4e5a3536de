from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from _batches import as_the_cloud_reads
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.sync.batches import EncodedBatch, encode_batch
from hybridai.edge.sync.uploader import SyncError, Uploader
from hybridai.link.retry import Backoff
from hybridai.observability.supervisor import Supervisor
from hybridai.protocol.sync import BatchAck

T0 = 1_700_000_000.0
DEVICE = "gw-1"
FAST = Backoff(base_s=0.001, factor=2.0, max_s=0.005)


class FakeCloud:
    """An in-memory sink: fails ``failures`` times, then acknowledges like the cloud does."""

    def __init__(self, store: EdgeStore | None = None, failures: int = 0) -> None:
        self.store = store
        self.failures = failures
        self.received: list[EncodedBatch] = []
        self.committed: dict[int, str] = {}
        self.synced_at_receipt: list[int] = []

    async def put_batch(self, batch: EncodedBatch) -> BatchAck:
        if self.store is not None:
            self.synced_at_receipt.append(self.store.stats().records_synced)
        self.received.append(batch)
        if self.failures > 0:
            self.failures -= 1
            raise SyncError("connection reset")
        duplicate = batch.seq in self.committed
        if duplicate:
            assert self.committed[batch.seq] == batch.sha256
        elif self.committed:
            assert batch.seq == max(self.committed) + 1, "batches must arrive in sequence"
        self.committed[batch.seq] = batch.sha256
        return BatchAck(
            device_id=DEVICE,
            batch_seq=batch.seq,
            stream=batch.stream,
            records=batch.records,
            duplicate=duplicate,
            table_version=len(self.committed),
        )


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"ts": T0 + i, "temp": 20.0 + i} for i in range(start, start + n)]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with EdgeStore(tmp_path / "edge.db") as s:
        yield s


def uploader(store: EdgeStore, sink: Any, **kwargs: Any) -> Uploader:
    return Uploader(store, sink, DEVICE, "plant-a", interval=lambda: 0.005, **kwargs)


def test_drain_sends_everything_in_sequence(store: EdgeStore) -> None:
    store.append("telemetry", rows(5))
    store.append("alerts", rows(2, start=50))
    store.append("telemetry", rows(3, start=100))
    cloud = FakeCloud(store)

    sent = asyncio.run(uploader(store, cloud, max_records=4).drain())

    assert sent == 3
    assert [b.seq for b in cloud.received] == [1, 2, 3]
    assert [(b.stream, b.records) for b in cloud.received] == [
        ("alerts", 2),  # high priority goes first, although it arrived later
        ("telemetry", 4),
        ("telemetry", 4),
    ]
    stats = store.stats()
    assert stats.backlog_records == 0
    assert stats.records_synced == 10
    assert stats.batches_synced == 3
    assert stats.bytes_synced == sum(len(b.body) for b in cloud.received)
    temps = [
        t for b in cloud.received for t in as_the_cloud_reads(b.body).column("temp").to_pylist()
    ]
    assert sorted(temps) == sorted(20.0 + i for i in [*range(5), 50, 51, *range(100, 103)])


def test_nothing_is_marked_synced_before_the_ack(store: EdgeStore) -> None:
    store.append("telemetry", rows(3))
    cloud = FakeCloud(store)

    asyncio.run(uploader(store, cloud, max_records=1).drain())

    assert cloud.synced_at_receipt == [0, 1, 2]


def test_failure_leaves_the_batch_pending_and_resends_the_same_bytes(store: EdgeStore) -> None:
    store.append("telemetry", rows(3))
    cloud = FakeCloud(store, failures=1)
    up = uploader(store, cloud)

    with pytest.raises(SyncError, match="connection reset"):
        asyncio.run(up.drain())

    assert store.stats().records_synced == 0
    assert (up.consecutive_failures, up.last_error) == (1, "connection reset")

    assert asyncio.run(up.drain()) == 1
    first, second = cloud.received
    assert (first.seq, first.sha256) == (second.seq, second.sha256)
    assert up.consecutive_failures == 0
    assert store.stats().records_synced == 3


def test_crash_between_next_batch_and_ack_resends_identical_batch(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with EdgeStore(path) as store:
        store.append("telemetry", rows(4))
        before_crash = store.next_batch(max_records=3)
        assert before_crash is not None
        lost = encode_batch(before_crash, DEVICE, "plant-a")  # sent, the ack never came back

    with EdgeStore(path) as store:
        store.append("telemetry", rows(2, start=10))
        cloud = FakeCloud()
        cloud.committed[lost.seq] = lost.sha256  # the cloud did commit it

        sent = asyncio.run(uploader(store, cloud).drain())
        stats = store.stats()

    assert sent == 2
    resent, fresh = cloud.received
    assert (resent.seq, resent.sha256, resent.body) == (lost.seq, lost.sha256, lost.body)
    assert fresh.seq == 2 and fresh.records == 3
    assert stats.records_synced == 6
    assert stats.backlog_records == 0


def test_mismatched_ack_is_a_failure(store: EdgeStore) -> None:
    class WrongSeq(FakeCloud):
        async def put_batch(self, batch: EncodedBatch) -> BatchAck:
            ack = await super().put_batch(batch)
            return ack.model_copy(update={"batch_seq": batch.seq + 1})

    store.append("telemetry", rows(2))
    up = uploader(store, WrongSeq())

    with pytest.raises(SyncError, match="answered batch"):
        asyncio.run(up.drain())

    assert store.stats().records_synced == 0


def test_drain_on_empty_store_sends_nothing(store: EdgeStore) -> None:
    cloud = FakeCloud()

    assert asyncio.run(uploader(store, cloud).drain()) == 0
    assert cloud.received == []


async def _run_until_drained(store: EdgeStore, up: Uploader) -> Supervisor:
    """The live sync loop: ``sync_step`` under a supervisor, as the agent runs it."""
    loops = Supervisor(backoff=FAST, rng=random.Random(0))
    loops.spawn("sync", up.sync_step)
    for _ in range(2000):
        if store.stats().backlog_records == 0 and up.consecutive_failures == 0:
            break
        await asyncio.sleep(0.002)
    await asyncio.wait_for(loops.stop(), 1.0)
    return loops


def test_the_sync_loop_retries_with_backoff_until_delivered(store: EdgeStore) -> None:
    store.append("telemetry", rows(3))
    cloud = FakeCloud(failures=3)
    up = uploader(store, cloud, max_records=2)

    loops = asyncio.run(_run_until_drained(store, up))

    assert [b.seq for b in cloud.received] == [1, 1, 1, 1, 2]
    assert store.stats().records_synced == 3
    assert up.consecutive_failures == 0
    assert up.last_error == "connection reset"
    (sync,) = loops.health()
    assert (sync.name, sync.failures, sync.restarts, sync.state) == ("sync", 3, 3, "stopped")
    assert sync.last_error == "SyncError: connection reset"


def test_the_sync_loop_survives_an_sqlite_error_and_keeps_syncing(store: EdgeStore) -> None:
    class DiskTrouble(FakeCloud):
        async def put_batch(self, batch: EncodedBatch) -> BatchAck:
            if not self.received:
                self.received.append(batch)
                raise sqlite3.OperationalError("disk I/O error")
            return await super().put_batch(batch)

    store.append("telemetry", rows(1))
    cloud = DiskTrouble()
    up = uploader(store, cloud)

    loops = asyncio.run(_run_until_drained(store, up))

    assert store.stats().records_synced == 1
    assert up.last_error == "OperationalError: disk I/O error"
    assert loops.health()[0].restarts == 1


def test_the_sync_loop_stops_promptly_during_a_long_backoff(store: EdgeStore) -> None:
    store.append("telemetry", rows(1))
    up = uploader(store, FakeCloud(failures=100))

    async def scenario() -> Supervisor:
        loops = Supervisor(backoff=Backoff(base_s=60, max_s=60), rng=random.Random(1))
        loops.spawn("sync", up.sync_step)
        while up.consecutive_failures == 0:
            await asyncio.sleep(0.001)
        await asyncio.wait_for(loops.stop(), 1.0)
        return loops

    loops = asyncio.run(scenario())

    assert up.consecutive_failures == 1
    assert loops.health()[0].state == "stopped"
