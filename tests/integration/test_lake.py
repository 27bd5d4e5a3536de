"""The lake on real Delta tables and a real DuckDB: exactly-once commits, schema, time travel.

One suite, every backend: ``lake_factory`` (``tests/_lakes.py``) runs each test on a local
folder and on a real S3 server (``weed``, see ``tests/_s3.py``), as the metadata suite runs on
SQLite and PostgreSQL; so do the maintenance and retention tests. What only S3 has
(credentials, several writer processes) is in ``test_lake_s3.py``.
"""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest
from _lake_writers import batch as numbered

from _lakes import LakeFactory
from hybridai.cloud.data.lake import Lake, LakeQueryError


def batch(
    device: str, start: int, n: int, at_site: str = "plant-a", **extra: list[Any]
) -> pa.Table:
    columns: dict[str, list[Any]] = {
        "record_id": [f"{device}:{start + i}" for i in range(n)],
        "device_id": [device] * n,
        "site": [at_site] * n,
        "ts": [1_700_000_000.0 + 86_400.0 * (i % 2) for i in range(n)],
        "date": ["2023-11-14" if i % 2 == 0 else "2023-11-15" for i in range(n)],
        "value": [float(i) for i in range(n)],
    }
    columns.update(extra)
    return pa.table(columns)


@pytest.fixture
def lake(lake_factory: LakeFactory) -> Lake:
    return lake_factory()


def test_commit_creates_a_table_and_counts_rows(lake: Lake) -> None:
    version, duplicate = lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5))

    assert (version, duplicate) == (0, False)
    assert lake.streams() == ["telemetry"]
    assert lake.versions() == {"telemetry": 0}
    assert lake.count("telemetry") == 5


def test_repeat_of_a_batch_is_a_flagged_no_op(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5))
    lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 5, 3))

    again = lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 5, 3))
    older = lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5))

    assert again == (1, True)
    assert older == (1, True)
    assert lake.count("telemetry") == 8
    assert lake.versions() == {"telemetry": 1}


def test_idempotency_key_survives_a_new_lake_object(lake: Lake, lake_factory: LakeFactory) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5))

    reopened = lake_factory(lake.root)

    assert reopened.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5)) == (0, True)
    assert reopened.count("telemetry") == 5


def test_devices_interleave_with_independent_sequences(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 2))
    lake.commit_batch("telemetry", "gw-2", 1, batch("gw-2", 0, 3))
    lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2, 2))

    assert lake.commit_batch("telemetry", "gw-2", 1, batch("gw-2", 0, 3)) == (2, True)
    assert lake.commit_batch("telemetry", "gw-2", 2, batch("gw-2", 3, 1)) == (3, False)
    result = lake.query("SELECT device_id, count(*) AS n FROM telemetry GROUP BY 1 ORDER BY 1")
    assert result.to_pylist() == [{"device_id": "gw-1", "n": 4}, {"device_id": "gw-2", "n": 4}]


def test_concurrent_repeats_commit_once(lake: Lake) -> None:
    results: list[tuple[int, bool]] = []

    def send() -> None:
        results.append(lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 4)))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [(0, False), (0, True), (0, True), (0, True)]
    assert lake.count("telemetry") == 4


def test_a_new_field_is_merged_into_the_schema(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 2))
    lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2, 2, humidity=[0.4, 0.5]))

    rows = lake.query("SELECT record_id, humidity FROM telemetry ORDER BY record_id").to_pylist()

    assert rows == [
        {"record_id": "gw-1:0", "humidity": None},
        {"record_id": "gw-1:1", "humidity": None},
        {"record_id": "gw-1:2", "humidity": 0.4},
        {"record_id": "gw-1:3", "humidity": 0.5},
    ]


def test_an_incompatible_field_is_refused_without_a_commit(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 2))

    with pytest.raises(ValueError, match="does not fit stream 'telemetry'"):
        lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2, 2, value=["a", "b"]))

    assert lake.versions() == {"telemetry": 0}
    assert lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2, 2)) == (1, False)


def test_tables_are_partitioned_by_site_and_date(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 4))
    lake.commit_batch("telemetry", "gw-9", 1, batch("gw-9", 0, 2, at_site="plant-b"))

    table = lake._open("telemetry")

    assert table is not None
    assert table.metadata().partition_columns == ["site", "date"]
    folders = {path.rsplit("/", 1)[0] for path in table.file_uris()}
    assert {folder.removeprefix(lake.root) for folder in folders} == {
        "/telemetry/site=plant-a/date=2023-11-14",
        "/telemetry/site=plant-a/date=2023-11-15",
        "/telemetry/site=plant-b/date=2023-11-14",
        "/telemetry/site=plant-b/date=2023-11-15",
    }


def test_time_travel_reads_an_old_version(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5))
    pinned = lake.versions()
    lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 5, 7))
    lake.commit_batch("failures", "gw-1", 1, batch("gw-1", 12, 1))

    sql = "SELECT count(*) AS n FROM telemetry"
    assert lake.query(sql).to_pylist() == [{"n": 12}]
    assert lake.query(sql, versions=pinned).to_pylist() == [{"n": 5}]
    assert lake.query("SELECT count(*) AS n FROM failures", versions=pinned).to_pylist() == [
        {"n": 1}
    ]


def test_query_joins_streams(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 4))
    lake.commit_batch("failures", "gw-1", 1, batch("gw-1", 4, 2))

    result = lake.query(
        "SELECT count(*) AS n FROM telemetry t JOIN failures f ON t.value = f.value"
    )

    assert result.to_pylist() == [{"n": 2}]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM nowhere", "nowhere"),
        ("SELEC 1", "syntax"),
        ("SELECT * FROM read_csv('/etc/hostname')", "disabled"),
        ("COPY (SELECT 1) TO 'out.csv'", "disabled"),
        ("SET enable_external_access = true", "locked"),
    ],
)
def test_bad_or_escaping_sql_raises_lake_query_error(lake: Lake, sql: str, message: str) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 1))

    with pytest.raises(LakeQueryError, match=f"(?i){message}"):
        lake.query(sql)


def test_time_travel_to_a_missing_version_or_stream_fails(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 1))

    with pytest.raises(LakeQueryError, match="no version 7"):
        lake.query("SELECT 1", versions={"telemetry": 7})
    with pytest.raises(LakeQueryError, match="'failures' does not exist"):
        lake.query("SELECT 1", versions={"failures": 0})


def test_empty_lake(lake: Lake) -> None:
    assert lake.streams() == []
    assert lake.versions() == {}
    assert lake.count("telemetry") == 0
    with pytest.raises(LakeQueryError, match="telemetry"):
        lake.query("SELECT * FROM telemetry")


@pytest.mark.parametrize("stream", ["Telemetry", "1st", "", "a-b", "../escape", "x" * 64])
def test_bad_stream_names_are_refused(lake: Lake, stream: str) -> None:
    with pytest.raises(ValueError, match="stream name"):
        lake.commit_batch(stream, "gw-1", 1, batch("gw-1", 0, 1))


@pytest.mark.parametrize(
    ("table", "seq", "message"),
    [
        (batch("gw-1", 0, 1).drop_columns(["date"]), 1, "required column.*date"),
        (batch("gw-1", 0, 1).drop_columns(["record_id", "ts"]), 1, "record_id, ts"),
        (batch("gw-2", 0, 2), 1, "must be 'gw-1'"),
        (pa.concat_tables([batch("gw-1", 0, 1), batch("gw-2", 1, 1)]), 1, "must be 'gw-1'"),
        (batch("gw-1", 0, 1, device_id=[None]), 1, "must be 'gw-1'"),
        (batch("gw-1", 0, 1, site=[None]), 1, "'site' must hold strings"),
        (batch("gw-1", 0, 2, site=["a", None]), 1, "'site' must hold strings"),
        (batch("gw-1", 0, 1, date=[20231114]), 1, "'date' must hold strings"),
        (batch("gw-1", 0, 0), 1, "at least one record"),
        (batch("gw-1", 0, 1), 0, "batch_seq must be >= 1"),
    ],
)
def test_bad_batches_are_refused(lake: Lake, table: pa.Table, seq: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lake.commit_batch("telemetry", "gw-1", seq, table)

    assert lake.streams() == []


# -- moved from the S3-only suite: every backend keeps these promises -------------------------


def test_batches_commit_once_and_a_retry_is_a_flagged_no_op(
    lake: Lake, lake_factory: LakeFactory
) -> None:
    assert lake.streams() == []
    assert lake.commit_batch("telemetry", "gw-1", 1, numbered("gw-1", 1)) == (0, False)
    assert lake.commit_batch("telemetry", "gw-2", 1, numbered("gw-2", 1, at_site="plant-b")) == (
        1,
        False,
    )
    assert lake.commit_batch("telemetry", "gw-1", 2, numbered("gw-1", 2)) == (2, False)

    again = lake.commit_batch("telemetry", "gw-1", 2, numbered("gw-1", 2))
    older = lake.commit_batch("telemetry", "gw-1", 1, numbered("gw-1", 1))
    # Another process (a second cloud replica) sees the same device transactions in the log.
    replica = lake_factory(lake.root)
    from_replica = replica.commit_batch("telemetry", "gw-2", 1, numbered("gw-2", 1))

    assert (again, older, from_replica) == ((2, True), (2, True), (2, True))
    assert lake.streams() == ["telemetry"]
    assert replica.versions() == {"telemetry": 2}
    assert lake.count("telemetry") == 15
    rows = lake.query(
        "SELECT site, count(*) AS n, count(DISTINCT record_id) AS ids FROM telemetry "
        "GROUP BY site ORDER BY site"
    ).to_pylist()
    assert rows == [
        {"site": "plant-a", "n": 10, "ids": 10},
        {"site": "plant-b", "n": 5, "ids": 5},
    ]


def test_time_travel_reads_each_past_version(lake: Lake) -> None:
    for seq in range(1, 4):
        lake.commit_batch("telemetry", "gw-1", seq, numbered("gw-1", seq))

    counts = {
        version: lake.query(
            "SELECT count(*) AS n FROM telemetry", versions={"telemetry": version}
        ).to_pylist()[0]["n"]
        for version in range(3)
    }

    assert counts == {0: 5, 1: 10, 2: 15}
    with pytest.raises(LakeQueryError, match="no version 9"):
        lake.query("SELECT 1 FROM telemetry", versions={"telemetry": 9})


def test_optimize_compacts_and_vacuum_keeps_what_retention_needs(lake: Lake) -> None:
    for seq in range(1, 7):
        lake.commit_batch("telemetry", "gw-1", seq, numbered("gw-1", seq))
    total = "SELECT count(*) AS n, sum(value) AS s FROM telemetry"
    before = lake.query(total).to_pylist()
    files_before = lake.files("telemetry")  # one per batch and (site, date) partition

    compacted = lake.optimize("telemetry")
    kept = lake.vacuum("telemetry")  # a week of retention: the old files stay
    old = lake.query(total, versions={"telemetry": 5}).to_pylist()
    swept = lake.vacuum("telemetry", retention_hours=0)

    assert compacted["files_removed"] == files_before == 12
    assert lake.files("telemetry") == compacted["files_added"] == 2  # one per partition
    assert kept["files_deleted"] == 0 and old == before
    assert swept["files_deleted"] == files_before
    assert lake.query(total).to_pylist() == before
    with pytest.raises(LakeQueryError):  # its files are gone now
        lake.query(total, versions={"telemetry": 5})
    assert lake.commit_batch("telemetry", "gw-1", 6, numbered("gw-1", 6))[1] is True


def test_retention_deletes_old_rows_and_their_files(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, numbered("gw-1", 1, n=4))

    deleted = lake.apply_retention("telemetry", older_than_ts=1_700_000_000.0 + 86_400.0)

    assert deleted == 2
    assert lake.count("telemetry") == 2
    assert lake.commit_batch("telemetry", "gw-1", 1, numbered("gw-1", 1))[1] is True


def test_schema_evolves_when_a_stream_gains_a_field(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, numbered("gw-1", 1, n=2))
    lake.commit_batch("telemetry", "gw-1", 2, numbered("gw-1", 2, n=2, humidity=[0.4, 0.5]))

    with pytest.raises(ValueError, match="does not fit stream 'telemetry'"):
        lake.commit_batch("telemetry", "gw-1", 3, numbered("gw-1", 3, n=2, value=["a", "b"]))

    assert lake.columns("telemetry")[-1] == "humidity"
    rows = lake.query("SELECT humidity FROM telemetry ORDER BY record_id").to_pylist()
    assert [r["humidity"] for r in rows] == [None, None, 0.4, 0.5]
    assert lake.versions() == {"telemetry": 1}  # the refused batch left no commit
