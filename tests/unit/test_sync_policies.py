"""The uploader applies data policies on the way out; the store keeps the originals."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_sync import DEVICE, T0, FakeCloud

from _batches import as_the_cloud_reads
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.sync.uploader import Uploader
from hybridai.governance.policies import pseudonymise
from hybridai.protocol.policy import DataPolicy

KEY = b"s" * 32


def test_batches_leave_redacted_and_restricted_streams_stay(tmp_path: Path) -> None:
    policies = {
        "telemetry": DataPolicy(
            stream="telemetry", fields={"operator": "personal", "recipe": "restricted"}
        ),
        "secret": DataPolicy(stream="secret", classification="restricted"),
    }
    with EdgeStore(tmp_path / "store.db") as store:
        store.append("secret", [{"ts": T0, "formula": "TOP-SECRET"}])  # oldest: would go first
        store.append("telemetry", [{"ts": T0 + 1, "operator": "alice", "recipe": "R9", "v": 1}])
        cloud = FakeCloud()
        uploader = Uploader(store, cloud, DEVICE, "site", policies=lambda: policies, site_key=KEY)
        assert asyncio.run(uploader.drain()) == 1
        [sent] = cloud.received
        assert sent.stream == "telemetry"
        row = as_the_cloud_reads(sent.body).to_pylist()[0]
        assert row["operator"] == pseudonymise(KEY, "alice")
        assert "recipe" not in row and row["v"] == 1
        assert b"alice" not in sent.body and b"R9" not in sent.body
        kept = store.stats(local_only=frozenset({"secret"}))
        assert (kept.backlog_records, kept.local_only_records) == (0, 1)


def test_a_batch_formed_before_its_stream_turned_restricted_is_withdrawn(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "store.db") as store:
        store.append("secret", [{"ts": T0, "formula": "TOP-SECRET"}])
        pending = store.next_batch()  # handed out while no policy was known
        assert pending is not None
        policies = {"secret": DataPolicy(stream="secret", classification="restricted")}
        cloud = FakeCloud()
        uploader = Uploader(store, cloud, DEVICE, "site", policies=lambda: policies, site_key=KEY)
        assert asyncio.run(uploader.drain()) == 0
        assert cloud.received == []
