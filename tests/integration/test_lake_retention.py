"""Lake retention on real Delta tables: old rows deleted, their bytes gone, exactly-once kept.

Every test runs on every backend (``lake_factory``: a local folder and S3).
"""

from __future__ import annotations

import pyarrow as pa
from sqlalchemy.orm import Session

from _lakes import LakeFactory
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


def files_holding(lakes: LakeFactory, lake: Lake, needle: bytes) -> list[str]:
    """Data files holding ``needle``. The Delta log is left out: its old commits keep column
    min/max statistics until the log itself is cleaned up (see ``Lake.apply_retention``)."""
    return [
        key
        for key, data in lakes.objects(lake.root).items()
        if key.endswith(".parquet") and "_delta_log" not in key.split("/") and needle in data
    ]


def test_retention_deletes_old_rows_and_their_files(lake_factory: LakeFactory) -> None:
    lake = lake_factory()
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, [40, 40, 40], "OLDROW"))
    lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 3, [1, 2], "NEWROW"))
    assert files_holding(lake_factory, lake, b"OLDROW")

    assert lake.apply_retention("telemetry", NOW - 30 * DAY) == 3
    assert lake.count("telemetry") == 2
    assert files_holding(lake_factory, lake, b"OLDROW") == []
    assert files_holding(lake_factory, lake, b"NEWROW")
    _, duplicate = lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 3, [1, 2], "NEWROW"))
    assert duplicate  # the device's transaction survives the deletion
    assert lake.apply_retention("telemetry", NOW - 30 * DAY) == 0
    assert lake.apply_retention("missing", NOW) == 0


def test_retention_leaves_another_replicas_uncommitted_file_alone(
    lake_factory: LakeFactory,
) -> None:
    """A replica writes its data file, then commits: retention in between must not take it.

    Retention vacuums only the files the deletion tombstoned (not a ``full`` vacuum, which
    would also remove every file the log does not name yet).
    """
    lake = lake_factory()
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, [40, 40], "OLDROW"))
    in_flight = "telemetry/part-00000-in-flight.zstd.parquet"
    lake_factory.put_object(lake.root, in_flight, b"PAR1 by another replica, not committed yet")

    assert lake.apply_retention("telemetry", NOW - 30 * DAY) == 2
    assert files_holding(lake_factory, lake, b"OLDROW") == []
    assert in_flight in lake_factory.objects(lake.root)


def test_the_cloud_applies_each_policys_lake_period(lake_factory: LakeFactory, db: Session) -> None:
    lake = lake_factory()
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
