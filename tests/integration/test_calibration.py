"""Cascade calibration of a trained version: validation split only, stored, used by deploy."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import open_cloud
from hybridai.cloud.data.lake import Lake
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines import calibration
from hybridai.cloud.pipelines.training import train
from hybridai.cloud.settings import CloudSettings
from hybridai.demo.simulator import Plant, pm_training_spec
from hybridai.protocol.errors import ApiError
from hybridai.protocol.placement import CalibrationRequest, PlacementPolicy
from hybridai.storage.blobs import LocalBlobStore

NOW = 1_700_000_000.0


def fill(lake: Lake, ticks: int) -> None:
    """Plant telemetry and failures, committed as one edge batch each."""
    plant = Plant([f"m{i:02d}" for i in range(12)], seed=1, start_ts=NOW)
    telemetry: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for _ in range(ticks):
        t, f = plant.step()
        telemetry += t
        failures += f
    for seq, (stream, records) in enumerate((("telemetry", telemetry), ("failures", failures))):
        rows = [
            {
                **r,
                "record_id": f"gw-1:{seq}:{i}",
                "device_id": "gw-1",
                "site": "plant-a",
                "date": dt.datetime.fromtimestamp(r["ts"], dt.UTC).strftime("%Y-%m-%d"),
            }
            for i, r in enumerate(records)
        ]
        lake.commit_batch(stream, "gw-1", seq + 1, pa.Table.from_pylist(rows))


@pytest.fixture
def trained(tmp_path: Path, db: Session) -> tuple[Lake, LocalBlobStore, str]:
    lake = Lake(str(tmp_path / "lake"))
    fill(lake, 450)
    result = train(lake, pm_training_spec(seed=0))
    blobs = LocalBlobStore(tmp_path / "blobs")
    info = registry.register_version(
        db, blobs, "pm", result.artifacts, result.metrics, result.lineage, "alice", NOW
    )
    return lake, blobs, info.version


def test_calibration_fits_on_validation_and_deploy_uses_it(
    trained: tuple[Lake, LocalBlobStore, str], db: Session
) -> None:
    lake, blobs, version = trained
    with pytest.raises(ApiError) as error:  # nothing calibrated yet
        registry.set_deployment(db, "pm", version, "a", NOW, PlacementPolicy(kind="cascade"))
    assert "model calibrate" in error.value.message

    report = calibration.calibrate(
        db, blobs, lake, "pm", version, CalibrationRequest(target_cloud_share=0.2), now=NOW
    )
    # A depth-4 tree's confidences come in a few tied blocks: the nearest achievable share.
    nearest = min(abs(p.cloud_share - 0.2) for p in report.curve)
    assert abs(report.validation.cloud_share - 0.2) == pytest.approx(nearest)
    assert report.n_validation > 0 and report.n_test > 0
    assert report.curve[0].cloud_share == 0.0 and report.curve[-1].cloud_share == 1.0
    assert report.curve[0].quality == report.edge_quality
    assert 0.0 <= report.threshold <= 2.0

    stored = registry.get_version(db, "pm", version).metrics["cascade"]
    assert stored["threshold"] == report.threshold and stored["measure"] == "margin"
    deployed = registry.set_deployment(
        db, "pm", version, "a", NOW, PlacementPolicy(kind="cascade", latency_budget_ms=50)
    )
    assert deployed.policy is not None and deployed.policy.cascade is not None
    assert deployed.policy.cascade.threshold == report.threshold
    (assignment,) = desired_state(db, "gw-1", {}).models
    assert assignment.policy == deployed.policy

    by_accuracy = calibration.calibrate(
        db, blobs, lake, "pm", version, CalibrationRequest(target_accuracy=0.0)
    )
    assert by_accuracy.validation.cloud_share == 0.0 and by_accuracy.met


def test_calibration_refuses_two_targets_and_uploaded_versions(
    trained: tuple[Lake, LocalBlobStore, str], db: Session
) -> None:
    lake, blobs, version = trained
    both = CalibrationRequest(target_cloud_share=0.2, target_accuracy=0.9)
    with pytest.raises(ApiError, match="exactly one"):
        calibration.calibrate(db, blobs, lake, "pm", version, both)
    artifacts = {"edge": blobs.get(registry.blob_key("pm", version, "edge"))}
    edge_only = registry.register_version(db, blobs, "pm", artifacts, {}, {}, "bob", NOW)
    with pytest.raises(ApiError, match=r"no cloud variant.*upload both"):
        calibration.calibrate(
            db, blobs, lake, "pm", edge_only.version, CalibrationRequest(target_cloud_share=0.2)
        )
    artifacts["cloud"] = blobs.get(registry.blob_key("pm", version, "cloud"))
    uploaded = registry.register_version(db, blobs, "pm", artifacts, {}, {}, "bob", NOW)
    with pytest.raises(ApiError, match=r"no lineage.*--data FILE --label COL"):
        calibration.calibrate(
            db, blobs, lake, "pm", uploaded.version, CalibrationRequest(target_cloud_share=0.2)
        )


def test_cli_labels_validation_and_test_figures_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = open_cloud(CloudSettings(data_dir=tmp_path / "cloud", rollout_tick_s=3600))
    try:
        fill(cloud.lake, 450)
        result = train(cloud.lake, pm_training_spec(seed=0))
        with cloud.session() as session:
            info = registry.register_version(
                session,
                cloud.blobs,
                "pm",
                result.artifacts,
                result.metrics,
                result.lineage,
                "a",
                NOW,
            )
        with TestClient(create_app(cloud)) as api:

            @contextlib.contextmanager
            def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[Any]:
                api.headers.clear()
                if token:
                    api.headers["Authorization"] = f"Bearer {token}"
                yield api

            monkeypatch.setattr(_api, "client", in_process)
            monkeypatch.setenv(
                "HYBRIDAI_TOKEN", cloud.settings.admin_token_path.read_text().strip()
            )
            monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
            monkeypatch.setenv("COLUMNS", "200")
            args = [
                "model",
                "calibrate",
                "pm",
                "--version",
                info.version,
                "--target-cloud-share",
                "0.2",
            ]
            shown = CliRunner().invoke(cli, args)
            as_json = CliRunner().invoke(cli, [*args, "--json"])
    finally:
        cloud.close()
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    title = " ".join(shown.output.split())  # the table title wraps
    assert "accuracy vs cloud share on the VALIDATION split" in title, shown.output
    [val_row] = [line for line in lines if "fitted here" in line]
    [test_row] = [line for line in lines if "held out:" in line]  # not the guard's line
    assert any(line.startswith("validation split only: edge alone") for line in lines)
    report = json.loads(as_json.output)
    val, test = report["validation"], report["test"]
    assert (val["rows"] > 0 and test["rows"] > 0 and val["rows"] != test["rows"]) or val != test
    assert {"edge_alone_accuracy", "cloud_alone_accuracy", "cpt50", "apgr", "curve"} <= set(val)
    assert set(test) == {"role", "rows", "cloud_share", "accuracy"}  # nothing fitted passes as test
    assert "fitted" in val["role"] and "held out" in test["role"]
    assert f"{val['accuracy']:.4f}" in val_row and f"{test['accuracy']:.4f}" in test_row
    curves = {c["split"]: c for c in report["curves_by_split"]}
    assert set(curves) == {"validation", "test"}
    assert curves["validation"]["rows"] == val["rows"] and curves["test"]["rows"] == test["rows"]
    assert curves["validation"]["apgr"] == val["apgr"]  # the unprefixed figures: validation's
    assert "fitted" in curves["validation"]["role"] and "held out" in curves["test"]["role"]
    assert any(line.lstrip("│┃ ").startswith("TEST") for line in lines)
