"""Quarantine on every metadata backend (SQLite, PostgreSQL) and lake backend (folder, S3):
exactly once per batch, counted per device, and a retype that moves misfit rows out."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from sqlalchemy.orm import Session

from _lakes import LakeFactory
from hybridai.cloud.data import quarantine
from hybridai.protocol.fleet import Capabilities, Device
from hybridai.storage.blobs import LocalBlobStore

SECRET = "SECRET-1c9d"


def _batch(device: str, temp: list[object]) -> pa.Table:
    n = len(temp)
    return pa.table(
        {
            "record_id": [f"{device}:{i}" for i in range(n)],
            "device_id": [device] * n,
            "site": ["north"] * n,
            "ts": [1.7e9 + i for i in range(n)],
            "date": ["2023-11-14"] * n,
            "temp": temp,
        }
    )


def test_a_batch_is_kept_once_and_counted_for_its_device(db: Session, tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    kept = [
        quarantine.keep(
            db, blobs, device_id="a", seq=seq, stream="telemetry", body=b"x",
            records=3, reason=f"reason {seq}", now=float(seq),
        )
        for seq in (1, 1, 2)
    ]  # fmt: skip
    assert [k.reason for k in kept] == ["reason 1", "reason 1", "reason 2"]
    assert len(quarantine.listing(db, device_id="a")) == 2
    assert quarantine.find(db, "a", 1) is not None and quarantine.find(db, "b", 1) is None
    assert blobs.exists(quarantine.blob_key("telemetry", "a", 2))
    assert quarantine.per_device(db) == {"a": (2, "reason 2")}
    devices = [
        Device(
            device_id=d,
            site="north",
            kind="edge-server",
            capabilities=Capabilities(cores=2, memory_mb=1024),
            enrolled_at=0.0,
        )
        for d in ("a", "b")
    ]
    shown = quarantine.on_devices(db, devices)
    assert [(d.quarantined_batches, d.last_quarantine) for d in shown] == [
        (2, "reason 2"),
        (0, None),
    ]


def test_a_declared_type_retypes_a_table_and_quarantines_what_cannot_convert(
    db: Session, lake_factory: LakeFactory, tmp_path: Path
) -> None:
    lake = lake_factory()
    lake.commit_batch("telemetry", "a", 1, _batch("a", ["61.5", SECRET]))
    lake.commit_batch("telemetry", "b", 1, _batch("b", ["60"]))
    blobs = LocalBlobStore(tmp_path / "blobs")
    moved = quarantine.retype(db, blobs, lake, "telemetry", {"temp": pa.float64()}, 5.0)
    assert [(m.device_id, m.batch_seq, m.records) for m in moved] == [("a", None, 1)]
    assert SECRET not in moved[0].reason and "'temp' as number" in moved[0].reason
    assert sorted(lake.query("SELECT temp FROM telemetry").column("temp").to_pylist()) == [
        60.0,
        61.5,
    ]
    assert lake.committed_seq("telemetry", "a") == 1 and lake.committed_seq("telemetry", "b") == 1
    assert quarantine.retype(db, blobs, lake, "telemetry", {"temp": pa.float64()}, 6.0) == []
