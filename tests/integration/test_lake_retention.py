"""Lake retention on real Delta tables: old rows deleted, their bytes gone, exactly-once kept."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from sqlalchemy.orm import Session

from hybridai.cloud import policies
from hybridai.cloud.data.lake import Lake
from hybridai.protocol.policy import PolicySpec

DAY = 86_400.0
NOW = 1_700_000_000.0 + 100 * DAY


def batch(device: str, start: int, ages_days: list[float], note: str) -> pa.Table:
    n = len(ages_days)
    return pa.table(
        {
            "record_id": [f"{device}:{start + i}" for i in range(n)],
            "device_id": [device] * n,
            "site": ["plant-a"] * n,
            "ts": [NOW - age * DAY for age in ages_days],
            "date": ["2023-11-14"] * n,
            "note": [f"{note}-{i}" for i in range(n)],
        }
    )


def files_holding(root: Path, needle: bytes) -> list[Path]:
    """Data files holding ``needle``. The Delta log is left out: its old commits keep column
    min/max statistics until the log itself is cleaned up (see ``Lake.apply_retention``)."""
    return [
        p
        for p in root.rglob("*.parquet")
        if "_delta_log" not in p.parts and needle in p.read_bytes()
    ]


def test_retention_deletes_old_rows_and_their_files(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, [40, 40, 40], "OLDROW"))
    lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 3, [1, 2], "NEWROW"))
    assert files_holding(tmp_path / "lake", b"OLDROW")

    assert lake.apply_retention("telemetry", NOW - 30 * DAY) == 3
    assert lake.count("telemetry") == 2
    assert files_holding(tmp_path / "lake", b"OLDROW") == []
    assert files_holding(tmp_path / "lake", b"NEWROW")
    _, duplicate = lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 3, [1, 2], "NEWROW"))
    assert duplicate  # the device's transaction survives the deletion
    assert lake.apply_retention("telemetry", NOW - 30 * DAY) == 0
    assert lake.apply_retention("missing", NOW) == 0


def test_retention_leaves_another_replicas_uncommitted_file_alone(tmp_path: Path) -> None:
    """A replica writes its data file, then commits: retention in between must not take it.

    Retention vacuums only the files the deletion tombstoned (not a ``full`` vacuum, which
    would also remove every file the log does not name yet).
    """
    lake = Lake(str(tmp_path / "lake"))
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, [40, 40], "OLDROW"))
    in_flight = tmp_path / "lake" / "telemetry" / "part-00000-in-flight.zstd.parquet"
    in_flight.write_bytes(b"PAR1 written by another replica, commit not made yet")

    assert lake.apply_retention("telemetry", NOW - 30 * DAY) == 2
    assert files_holding(tmp_path / "lake", b"OLDROW") == []
    assert in_flight.exists()


def test_the_cloud_applies_each_policys_lake_period(tmp_path: Path, db: Session) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, [40, 10, 1], "T"))
    lake.commit_batch("failures", "gw-1", 2, batch("gw-1", 3, [40, 10], "F"))
    spec = PolicySpec(
        fields={"note": "personal"}, lake_retention_days={"personal": 7, "internal": 365}
    )
    policies.put_policy(db, "telemetry", spec, "ops", NOW)
    policies.put_policy(db, "failures", PolicySpec(), "ops", NOW)  # no period: kept

    result = policies.apply_lake_retention(db, lake, NOW)

    assert result.deleted == {"telemetry": 2}
    assert result.cutoffs["telemetry"] == NOW - 7 * DAY
    assert (lake.count("telemetry"), lake.count("failures")) == (1, 2)
