"""Calibrating models hybridai did not train: labelled rows from a file or a lake query.

A three-class model is trained here, then uploaded as ONNX files as any user would (with its
test rows, of which only hashes are kept); ``hybridai model calibrate --data`` fits it, and the
guard refuses rows a model was trained or tested on, for uploaded and trained versions alike.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _multiclass import FEATURES, three_class_query, three_class_spec
from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines.training import split_rows, train
from hybridai.cloud.settings import CloudSettings

NOW = 1_700_000_000.0


def write(path: Path, x: Any, y: Any) -> Path:
    columns = {name: x[:, i].astype("float64") for i, name in enumerate(FEATURES)}
    pq.write_table(pa.table({**columns, "y": y}), path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cloud, TestClient, Path]]:
    folder = tmp_path_factory.mktemp("any-model")
    cloud = open_cloud(CloudSettings(data_dir=folder / "cloud", rollout_tick_s=3600))
    spec = three_class_spec()
    result = train(cloud.lake, spec)
    with cloud.session() as session:  # the same model, trained here: it keeps its lineage
        registry.register_version(
            session, cloud.blobs, "tri", result.artifacts, result.metrics, result.lineage, "a", NOW
        )
    splits = split_rows(cloud.lake.query(spec.query), spec)
    (folder / "edge.onnx").write_bytes(result.artifacts["edge"])
    (folder / "cloud.onnx").write_bytes(result.artifacts["cloud"])
    write(folder / "test.parquet", splits.x[splits.test], splits.y[splits.test])
    fresh = split_rows(cloud.lake.query(three_class_query(rows=3000, seed=3000)), spec)
    write(folder / "validation.parquet", fresh.x, fresh.y)  # rows the model never saw
    try:
        with TestClient(create_app(cloud)) as api:
            yield cloud, api, folder
    finally:
        cloud.close()


@pytest.fixture
def run(
    setup: tuple[Cloud, TestClient, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Any:
    cloud, api, _ = setup

    @contextlib.contextmanager
    def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[Any]:
        api.headers.clear()
        if token:
            api.headers["Authorization"] = f"Bearer {token}"
        yield api

    monkeypatch.setattr(_api, "client", in_process)
    monkeypatch.setenv("HYBRIDAI_TOKEN", cloud.settings.admin_token_path.read_text().strip())
    monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("COLUMNS", "200")
    return lambda *args: CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def uploaded(setup: tuple[Cloud, TestClient, Path]) -> str:
    _, api, folder = setup
    api.headers["Authorization"] = (
        f"Bearer {setup[0].settings.admin_token_path.read_text().strip()}"
    )
    files = {
        "edge": ("edge.onnx", (folder / "edge.onnx").read_bytes()),
        "cloud": ("cloud.onnx", (folder / "cloud.onnx").read_bytes()),
        "test_data": ("test.parquet", (folder / "test.parquet").read_bytes()),
    }
    response = api.post("/api/v1/models/up/versions", files=files, data={"label": "y"})
    assert response.status_code == 201, response.text
    test_rows = response.json()["lineage"]["test_rows"]
    assert test_rows["count"] == 750 and test_rows["features"] == FEATURES
    return str(response.json()["version"])


def test_an_uploaded_model_calibrates_on_a_file_via_the_cli(
    run: Any, uploaded: str, setup: tuple[Cloud, TestClient, Path]
) -> None:
    folder = setup[2]
    args = ["model", "calibrate", "up", "--version", uploaded, "--data"]
    args += [folder / "validation.parquet", "--label", "y", "--measure", "entropy"]
    shown = run(*args, "--target-cloud-share", "0.3")
    as_json = run(*args, "--target-cloud-share", "0.3", "--json")

    assert shown.exit_code == 0, shown.output
    assert "uploaded file (3000 rows), 750 of its rows kept apart as the test split" in shown.output
    assert "no row is one of the 750 test rows recorded with the upload" in shown.output
    report = json.loads(as_json.output)
    assert report["validation"]["rows"] == 2250 and report["test"]["rows"] == 750
    assert abs(report["validation"]["cloud_share"] - 0.3) < 0.01
    assert abs(report["test"]["cloud_share"] - 0.3) < 0.05  # carries over to held-out rows
    assert report["validation"]["accuracy"] > report["validation"]["edge_alone_accuracy"]
    with setup[0].session() as session:  # stored with the version: deploy --policy cascade
        stored = registry.get_version(session, "up", uploaded).metrics["cascade"]
    assert stored["measure"] == "entropy" and stored["rows"].startswith("uploaded file")


def test_the_guard_refuses_an_uploaded_models_test_rows(
    run: Any, uploaded: str, setup: tuple[Cloud, TestClient, Path]
) -> None:
    folder = setup[2]
    args = ["model", "calibrate", "up", "--version", uploaded, "--data", folder / "test.parquet"]
    refused = run(*args, "--label", "y", "--target-cloud-share", "0.3")

    assert refused.exit_code != 0
    assert "HTTP 400" in refused.output and "never saw" in refused.output
    assert "750 of the given rows" in " ".join(refused.output.split())


def test_unusable_files_are_refused_with_what_to_change(
    run: Any, uploaded: str, setup: tuple[Cloud, TestClient, Path], tmp_path: Path
) -> None:
    x = [[0.1, 0.2]] * 30
    no_label = tmp_path / "no_label.parquet"
    pq.write_table(pa.table({"x": [r[0] for r in x], "z": [r[1] for r in x]}), no_label)
    text_label = tmp_path / "text_label.parquet"
    pq.write_table(pa.table({"x": [0.1] * 30, "z": [0.2] * 30, "y": ["cat"] * 30}), text_label)
    not_parquet = tmp_path / "rows.csv"
    not_parquet.write_text("x,z,y\n0.1,0.2,1\n")
    base = ["model", "calibrate", "up", "--version", uploaded, "--target-cloud-share", "0.3"]

    cases = {
        no_label: "the rows have no column(s) y; they have x, z",
        text_label: "is string, not class numbers",
        not_parquet: "not a readable Parquet file",
    }
    for path, message in cases.items():
        answer = run(*base, "--data", path, "--label", "y")
        assert answer.exit_code != 0 and "HTTP 400" in answer.output, answer.output
        assert message in " ".join(answer.output.split()), answer.output
    without_label = run(*base, "--data", no_label)
    assert without_label.exit_code != 0 and "--label COL" in without_label.output


def test_a_trained_version_refuses_a_query_that_reads_its_test_rows(
    setup: tuple[Cloud, TestClient, Path],
) -> None:
    _, api, _ = setup
    body = {"target_cloud_share": 0.3, "query": three_class_query(), "label": "y"}
    leak = api.post("/api/v1/models/tri/versions/1/calibration", json=body)
    assert leak.status_code == 400 and leak.json()["code"] == "test_rows_leak"
    assert "trained or tested on" in leak.json()["error"]

    body["query"] = three_class_query(rows=2000, seed=3000)  # new rows: fitted, own test split
    fresh = api.post("/api/v1/models/tri/versions/1/calibration", json=body)
    assert fresh.status_code == 200, fresh.text
    report = fresh.json()
    assert report["rows"] == "lake query" and report["n_validation"] == 2000
    assert report["n_test"] == 750  # the version's own test split, read again from lineage
    assert "1800 training or 750 test rows" in report["guard"]

    body["features"] = ["z", "x"]
    swapped = api.post("/api/v1/models/tri/versions/1/calibration", json=body)
    assert swapped.status_code == 400 and "x, z, in that order" in swapped.json()["error"]
