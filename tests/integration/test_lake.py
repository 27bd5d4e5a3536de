"""The lake on real Delta tables and a real DuckDB: exactly-once commits, schema, time travel."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

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
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def test_commit_creates_a_table_and_counts_rows(lake: Lake) -> None:
    version, duplicate = lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5))

    assert (version, duplicate) == (0, False)
    assert lake.datasets() == ["telemetry"]
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


def test_idempotency_key_survives_a_new_lake_object(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 5))

    reopened = Lake(lake.root)

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

    with pytest.raises(ValueError, match="does not fit dataset 'telemetry'"):
        lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2, 2, value=["a", "b"]))

    assert lake.versions() == {"telemetry": 0}
    assert lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2, 2)) == (1, False)


def test_tables_are_partitioned_by_site_and_date(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 4))
    lake.commit_batch("telemetry", "gw-9", 1, batch("gw-9", 0, 2, at_site="plant-b"))

    table = DeltaTable(str(Path(lake.root) / "telemetry"))

    assert table.metadata().partition_columns == ["site", "date"]
    folders = {p.relative_to(lake.root).as_posix() for p in Path(lake.root).glob("*/site=*/date=*")}
    assert folders == {
        "telemetry/site=plant-a/date=2023-11-14",
        "telemetry/site=plant-a/date=2023-11-15",
        "telemetry/site=plant-b/date=2023-11-14",
        "telemetry/site=plant-b/date=2023-11-15",
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


def test_query_joins_datasets(lake: Lake) -> None:
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


def test_time_travel_to_a_missing_version_or_dataset_fails(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 0, 1))

    with pytest.raises(LakeQueryError, match="no version 7"):
        lake.query("SELECT 1", versions={"telemetry": 7})
    with pytest.raises(LakeQueryError, match="'failures' does not exist"):
        lake.query("SELECT 1", versions={"failures": 0})


def test_empty_lake(lake: Lake) -> None:
    assert lake.datasets() == []
    assert lake.versions() == {}
    assert lake.count("telemetry") == 0
    with pytest.raises(LakeQueryError, match="telemetry"):
        lake.query("SELECT * FROM telemetry")


@pytest.mark.parametrize("dataset", ["Telemetry", "1st", "", "a-b", "../escape", "x" * 64])
def test_bad_dataset_names_are_refused(lake: Lake, dataset: str) -> None:
    with pytest.raises(ValueError, match="dataset name"):
        lake.commit_batch(dataset, "gw-1", 1, batch("gw-1", 0, 1))


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

    assert lake.datasets() == []
