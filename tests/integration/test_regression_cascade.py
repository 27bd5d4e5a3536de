"""Regression with a cascade: bagged ensembles whose spread says where the edge is unsure.

The edge model (five small MLPs on bootstrap samples) disagrees with itself where it has seen
few rows; calibration with the spread measure must put the cloud's share where the edge is
wrong, and the edge's rule, built from the deployment exactly as the agent builds it, must
reproduce calibration's decisions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines import calibration
from hybridai.cloud.pipelines.training import TrainingError, TrainingResult, split_rows, train
from hybridai.edge.routing.placement_state import to_placing
from hybridai.protocol.errors import ApiError
from hybridai.protocol.placement import CalibrationRequest, PlacementPolicy
from hybridai.protocol.registry import TrainingSpec
from hybridai.storage.blobs import LocalBlobStore

NOW = 1_700_000_000.0
QUERY = """
SELECT x, z, sin(2 * x) * 3 + z AS y FROM (
  SELECT i,
    ((((i * 7919) % 1000) / 1000.0) + (((i * 104729) % 997) / 997.0)
      + (((i * 15485863) % 991) / 991.0) - 1.5) * 3 AS x,
    (((i * 32452843) % 983) / 983.0) * 4 - 2 AS z
  FROM range(2000) t(i))
"""  # x is dense in the middle and sparse in its tails, where the edge has seen little


def spec(**update: Any) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {
            "model_name": "reg",
            "query": QUERY,
            "features": ["x", "z"],
            "label": "y",
            "task": "regression",
            "edge_family": "mlp",
            "cloud_family": "forest",
            "params": {"edge": {"hidden_layer_sizes": [16]}, "cloud": {"n_estimators": 20}},
            **update,
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, TrainingResult]:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    return lake, train(lake, spec())


def test_each_variant_answers_its_mean_and_its_members(
    trained: tuple[Lake, TrainingResult],
) -> None:
    _, result = trained
    x = np.array([[0.0, 0.0], [4.0, -3.0]], dtype=np.float32)
    for artifact in result.artifacts.values():
        session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
        prediction, members = session.run(None, {"input": x})
        assert prediction.shape == (2, 1) and members.shape == (2, 5)
        assert np.allclose(prediction[:, 0], members.mean(axis=1), atol=1e-4)
    assert result.metrics["cloud"]["r2"] > result.metrics["edge"]["r2"] > 0.5
    assert set(result.metrics["edge"]) == {"mae", "rmse", "r2", "n_test", "size_bytes"}
    assert result.lineage["task"] == "regression" and result.lineage["split"]["kind"] == "random"


def test_spread_calibration_escalates_where_the_edge_is_wrong_and_the_edge_agrees(
    trained: tuple[Lake, TrainingResult], tmp_path: Path, db: Session
) -> None:
    lake, result = trained
    blobs = LocalBlobStore(tmp_path / "blobs")
    info = registry.register_version(
        db, blobs, "reg", result.artifacts, result.metrics, result.lineage, "a", NOW
    )
    request = CalibrationRequest(target_cloud_share=0.3, measure="spread")

    report = calibration.calibrate(db, blobs, lake, "reg", info.version, request, now=NOW)

    assert abs(report.validation.cloud_share - 0.3) < 0.02
    assert abs(report.test.cloud_share - 0.3) < 0.08
    assert report.validation.quality > report.edge_quality  # minus MAE: less error
    assert report.apgr is not None and report.apgr > 0.6  # better than random routing (0.5)
    assert report.band is not None and "absolute error" in report.rows

    deployed = registry.set_deployment(
        db, "reg", info.version, "a", NOW, PlacementPolicy(kind="cascade")
    )
    assert deployed.policy is not None
    rule = to_placing(deployed.policy).policy.cascade  # as the edge agent builds it
    splits = split_rows(lake.query(QUERY), spec())
    x_test = splits.x[splits.test]
    edge = ort.InferenceSession(result.artifacts["edge"], providers=["CPUExecutionProvider"])
    escalated = rule.confidences(edge.run(None, {"input": x_test})[1]) < rule.threshold
    assert escalated.mean() == pytest.approx(report.test.cloud_share)


def test_regression_refuses_what_it_cannot_do(
    trained: tuple[Lake, TrainingResult], tmp_path: Path, db: Session
) -> None:
    lake, result = trained
    with pytest.raises(TrainingError, match="smaller family"):
        train(lake, spec(edge_variant="dynamic"))
    with pytest.raises(TrainingError, match="a regression target is a number"):
        train(lake, spec(query="SELECT i AS x, i AS z, 'a' AS y FROM range(100) t(i)"))
    blobs = LocalBlobStore(tmp_path / "blobs")
    info = registry.register_version(
        db, blobs, "reg", result.artifacts, result.metrics, result.lineage, "a", NOW
    )
    by_accuracy = CalibrationRequest(target_accuracy=0.9, measure="spread")
    with pytest.raises(ApiError, match="cloud share"):
        calibration.calibrate(db, blobs, lake, "reg", info.version, by_accuracy)
    classifier_measure = CalibrationRequest(target_cloud_share=0.3, measure="margin")
    with pytest.raises(ApiError, match=r"regression ensemble.*measure spread"):
        calibration.calibrate(db, blobs, lake, "reg", info.version, classifier_measure)
