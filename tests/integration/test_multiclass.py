"""Three-class models end to end: train, ONNX, edge variant, metrics and calibration."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from _multiclass import CLASSES, three_class_spec
from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.training import TrainingResult, train
from hybridai.protocol.registry import EdgeBudget


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return Lake(str(tmp_path_factory.mktemp("lake")))  # the data is a query over range()


@pytest.fixture(scope="module")
def result(lake: Lake) -> TrainingResult:
    return train(lake, three_class_spec())


def test_a_three_class_model_trains_with_macro_metrics(result: TrainingResult) -> None:
    edge, cloud = result.metrics["edge"], result.metrics["cloud"]
    assert edge["classes"] == cloud["classes"] == CLASSES
    assert "positive_rate" not in edge  # a binary figure, meaningless for k classes
    assert cloud["accuracy"] > edge["accuracy"] + 0.1  # linear edge, boosted cloud
    assert 0.8 < cloud["roc_auc"] <= 1.0 and 0.0 < edge["f1"] < cloud["f1"]
    assert result.lineage["classes"] == CLASSES


def test_the_onnx_exports_answer_k_probabilities(result: TrainingResult) -> None:
    x = np.array([[0.0, 0.0], [4.0, -4.0], [-4.0, 4.0]], dtype=np.float32)
    for variant, artifact in result.artifacts.items():
        session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
        label, probabilities = session.run(None, {"input": x})
        assert probabilities.shape == (3, CLASSES), variant
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        assert (label == probabilities.argmax(axis=1)).all()
    cloud = ort.InferenceSession(result.artifacts["cloud"], providers=["CPUExecutionProvider"])
    assert cloud.run(None, {"input": x})[0].tolist() == [0, 1, 2]  # circle, below, above sine


def test_an_int8_edge_variant_of_a_three_class_mlp_stays_within_budget(lake: Lake) -> None:
    spec = three_class_spec(
        cloud_family="mlp",
        edge_variant="static",
        edge_budget=EdgeBudget(metric="accuracy", max_drop=0.03),
    )
    outcome = train(lake, spec)

    assert outcome.metrics["edge"]["classes"] == CLASSES
    assert outcome.edge_variant["size_ratio"] < 0.8
    assert outcome.edge_variant["quality_delta"] >= -0.03


def test_a_three_class_torch_model_exports_k_outputs(lake: Lake) -> None:
    pytest.importorskip("torch")
    spec = three_class_spec(
        cloud_family="mlp-torch",
        edge_family="mlp-torch",
        edge_variant="dynamic",
        params={"cloud": {"hidden_layer_sizes": [64, 32], "epochs": 200}},
        edge_budget=EdgeBudget(metric="accuracy", max_drop=0.05),
    )
    outcome = train(lake, spec)

    assert outcome.metrics["cloud"]["classes"] == CLASSES
    assert outcome.metrics["cloud"]["accuracy"] > 0.7
