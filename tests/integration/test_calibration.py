"""Cascade calibration of a trained version: validation split only, stored, used by deploy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines import calibration
from hybridai.cloud.pipelines.training import train
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
    for seq, (dataset, records) in enumerate((("telemetry", telemetry), ("failures", failures))):
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
        lake.commit_batch(dataset, "gw-1", seq + 1, pa.Table.from_pylist(rows))


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
    uploaded = registry.register_version(db, blobs, "pm", artifacts, {}, {}, "bob", NOW)
    with pytest.raises(ApiError, match="no lineage"):
        calibration.calibrate(
            db, blobs, lake, "pm", uploaded.version, CalibrationRequest(target_cloud_share=0.2)
        )
