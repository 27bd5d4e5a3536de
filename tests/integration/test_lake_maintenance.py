"""Lake maintenance on real Delta tables: optimize compacts, vacuum deletes, rows stay put.

The lake-level tests run on every backend (``lake_factory``: a local folder and S3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _lakes import LakeFactory
from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.data.lake import Lake, LakeQueryError
from hybridai.cloud.settings import CloudSettings

BATCHES = 12


def batch(seq: int, rows: int = 20) -> pa.Table:
    return pa.table(
        {
            "record_id": [f"gw-1:{seq * 1000 + i}" for i in range(rows)],
            "device_id": ["gw-1"] * rows,
            "site": ["plant-a"] * rows,
            "ts": [1_700_000_000.0 + seq * 60 + i for i in range(rows)],
            "date": ["2023-11-14"] * rows,
            "value": [float(seq * rows + i) for i in range(rows)],
        }
    )


def parquet_files(lakes: LakeFactory, lake: Lake) -> int:
    return sum(1 for key in lakes.objects(lake.root) if key.endswith(".parquet"))


def fill(lake: Lake) -> None:
    for seq in range(1, BATCHES + 1):  # one small file per edge batch
        lake.commit_batch("telemetry", "gw-1", seq, batch(seq))


SUM = "SELECT count(*) AS n, sum(value) AS s FROM telemetry"


def test_optimize_compacts_and_vacuum_deletes_files_rows_unchanged(
    lake_factory: LakeFactory,
) -> None:
    lake = lake_factory()
    fill(lake)
    before = lake.query(SUM).to_pylist()
    last_batch_version = lake.versions()["telemetry"]
    assert lake.files("telemetry") == BATCHES

    compacted = lake.optimize("telemetry")
    assert compacted["files_removed"] == BATCHES and compacted["files_added"] == 1
    assert lake.files("telemetry") == 1
    assert lake.query(SUM).to_pylist() == before
    # Time travel: the version before compaction still reads its own (old) files.
    pinned = {"telemetry": last_batch_version - 5}
    assert lake.query("SELECT count(*) AS n FROM telemetry", pinned).to_pylist() == [{"n": 140}]

    # A vacuum that keeps a week of versions deletes nothing those versions need.
    kept = lake.vacuum("telemetry", retention_hours=168)
    assert kept["files_deleted"] == 0
    assert parquet_files(lake_factory, lake) == BATCHES + 1
    assert lake.query("SELECT count(*) AS n FROM telemetry", pinned).to_pylist() == [{"n": 140}]

    # Retention 0: only the current version's files survive; older versions cannot be read.
    swept = lake.vacuum("telemetry", retention_hours=0)
    assert swept["files_deleted"] == BATCHES
    assert parquet_files(lake_factory, lake) == 1
    assert lake.query(SUM).to_pylist() == before
    with pytest.raises(LakeQueryError):
        lake.query("SELECT count(*) AS n FROM telemetry", pinned)

    # Exactly-once survives maintenance: the device's transactions are still in the log.
    assert lake.commit_batch("telemetry", "gw-1", BATCHES, batch(BATCHES))[1] is True
    assert lake.commit_batch("telemetry", "gw-1", BATCHES + 1, batch(BATCHES + 1))[1] is False
    assert lake.count("telemetry") == 20 * (BATCHES + 1)


def test_maintenance_refuses_unknown_streams_and_bad_retention(
    lake_factory: LakeFactory,
) -> None:
    lake = lake_factory()
    with pytest.raises(LookupError):
        lake.optimize("nothing_here")
    with pytest.raises(ValueError):
        lake.vacuum("../etc", 1)
    fill(lake)
    with pytest.raises(ValueError):
        lake.vacuum("telemetry", -1)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    opened = open_cloud(CloudSettings(data_dir=tmp_path / "cloud"))
    yield opened
    opened.close()


def test_the_api_and_cli_run_maintenance_for_operators(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(cloud.lake)
    admin = {"Authorization": f"Bearer {cloud.settings.admin_token_path.read_text().strip()}"}
    with TestClient(create_app(cloud)) as api:
        path = "/api/v1/lake/maintenance"
        done = api.post(path, json={"stream": "telemetry", "action": "optimize"}, headers=admin)
        assert done.status_code == 200, done.text
        assert done.json()["files_removed"] == BATCHES and done.json()["files_now"] == 1
        swept = api.post(
            path,
            json={"stream": "telemetry", "action": "vacuum", "retain_hours": 0},
            headers=admin,
        )
        assert swept.status_code == 200 and swept.json()["files_deleted"] == BATCHES
        missing = api.post(path, json={"stream": "absent", "action": "optimize"}, headers=admin)
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
        anonymous = api.post(path, json={"stream": "telemetry", "action": "optimize"})
        assert anonymous.status_code == 401

        # The CLI speaks to the same route (its HTTP client swapped for the in-process app).
        @contextlib.contextmanager
        def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[Any]:
            api.headers.clear()
            if token:
                api.headers["Authorization"] = f"Bearer {token}"
            yield api

        monkeypatch.setattr(_api, "client", in_process)
        token = admin["Authorization"].removeprefix("Bearer ")
        result = CliRunner().invoke(cli, ["lake", "vacuum", "telemetry", "--token", token])
        assert result.exit_code == 0, result.output
        assert "vacuum done" in result.output
        result = CliRunner().invoke(cli, ["lake", "optimize", "nope", "--token", token])
        assert result.exit_code != 0 and "does not exist" in result.output
