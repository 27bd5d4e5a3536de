"""The sync gates for thin links: a token-bucket bandwidth cap and a time-of-day window."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.sync.batches import EncodedBatch
from hybridai.edge.sync.uploader import Uploader
from hybridai.edge.sync.window import SyncWindow, parse_window
from hybridai.link.token_bucket import TokenBucket
from hybridai.protocol.sync import BatchAck

T0 = 1_700_000_000.0


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=1000, burst=1000, now=0.0)

    assert bucket.reserve(1000, now=0.0) == 0.0
    assert bucket.reserve(500, now=0.0) == pytest.approx(0.5)
    assert bucket.reserve(500, now=0.5) == pytest.approx(0.5)  # the debt carries over
    assert bucket.reserve(100, now=10.0) == 0.0  # refilled, capped at the burst


def test_token_bucket_holds_the_average_rate_for_big_items() -> None:
    bucket = TokenBucket(rate=100, now=0.0)
    now = 0.0
    for _ in range(50):
        now += bucket.reserve(450, now)  # larger than the burst: still goes, later

    assert 50 * 450 / now == pytest.approx(100, rel=0.05)


@pytest.mark.parametrize("bad", [0, -1])
def test_token_bucket_refuses_a_non_positive_rate(bad: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=bad)


def test_window_wraps_midnight_and_accepts_several_spans() -> None:
    window = parse_window("22:00-06:00, 12:00-12:30")
    assert window is not None

    assert [window.open_at(m) for m in (22 * 60, 23 * 60 + 59, 0, 5 * 60 + 59)] == [True] * 4
    assert [window.open_at(m) for m in (6 * 60, 21 * 60 + 59, 12 * 60 + 30)] == [False] * 3
    assert window.open_at(12 * 60 + 15)
    assert parse_window(None) is None and parse_window(" ") is None


@pytest.mark.parametrize("bad", ["22-06", "25:00-01:00", "10:00-10:00", "10:61-11:00"])
def test_bad_windows_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="sync window"):
        parse_window(bad)


class Sink:
    def __init__(self) -> None:
        self.sent: list[EncodedBatch] = []

    async def put_batch(self, batch: EncodedBatch) -> BatchAck:
        self.sent.append(batch)
        return BatchAck(
            device_id="gw",
            batch_seq=batch.seq,
            stream=batch.stream,
            records=batch.records,
            duplicate=False,
            table_version=1,
        )


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(store: EdgeStore, sink: Sink, t: FakeTime, **kwargs: Any) -> Uploader:
    return Uploader(store, sink, "gw", "plant", clock=t.clock, sleep=t.sleep, **kwargs)


def test_bandwidth_cap_paces_the_drain(tmp_path: Path) -> None:
    t, sink = FakeTime(), Sink()
    with EdgeStore(tmp_path / "edge.db") as store:
        store.append("telemetry", [{"ts": T0 + i, "v": i * 1.5} for i in range(400)])
        up = make(store, sink, t, max_records=20, bandwidth=lambda: 2000.0)

        asyncio.run(up.drain())

    sent = sum(len(b.body) for b in sink.sent)
    assert len(sink.sent) == 20
    assert sent / t.now == pytest.approx(2000.0, rel=0.25)  # within one burst of the cap
    assert sent / t.now <= 2000.0 * 1.25
    assert up.throughput[0] == pytest.approx(sent / t.now)


class Closed(SyncWindow):
    def open_now(self, now: float) -> bool:
        return False


def test_outside_the_window_only_high_priority_syncs(tmp_path: Path) -> None:
    t, sink = FakeTime(), Sink()
    with EdgeStore(tmp_path / "edge.db") as store:
        store.append("telemetry", [{"ts": T0, "v": 1}])
        store.append("alerts", [{"ts": T0, "v": 1}])
        window: dict[str, SyncWindow | None] = {"now": Closed(((0, 1),))}
        up = make(store, sink, t, window=lambda: window["now"])

        outside = asyncio.run(up.drain())
        backlog = store.stats().backlog_records
        window["now"] = None
        inside = asyncio.run(up.drain())

    assert (outside, backlog, inside) == (1, 1, 1)
    assert [b.stream for b in sink.sent] == ["alerts", "telemetry"]


def test_throughput_is_reported_per_stream(tmp_path: Path) -> None:
    t, sink = FakeTime(), Sink()
    with EdgeStore(tmp_path / "edge.db") as store:
        store.append("alerts", [{"ts": T0 + i, "code": f"c{i}"} for i in range(40)])
        store.append("telemetry", [{"ts": T0 + i, "v": i * 1.5} for i in range(200)])
        up = make(store, sink, t, max_records=20, bandwidth=lambda: 1000.0)

        asyncio.run(up.drain())

    streams = ("alerts", "telemetry")
    size = {s: sum(len(b.body) for b in sink.sent if b.stream == s) for s in streams}
    count = {"alerts": 40, "telemetry": 200}
    assert set(up.stream_throughput) == set(streams)
    # each stream's rate is over the time its own batches took: together, the whole drain
    seconds = sum(size[s] / rate for s, (rate, _) in up.stream_throughput.items())
    assert seconds == pytest.approx(t.now, rel=1e-6)
    for stream, (bytes_per_s, records_per_s) in up.stream_throughput.items():
        assert records_per_s == pytest.approx(bytes_per_s * count[stream] / size[stream])
    assert 1000.0 * 0.8 <= up.stream_throughput["telemetry"][0] <= 1000.0 * 1.25  # the cap
