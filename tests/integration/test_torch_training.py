"""PyTorch models (``mlp-torch``): exported with torch.onnx, quantized, or a clear extra hint."""

from __future__ import annotations

import sys

import pytest
from test_edge_variants import fill_plant

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.training import TrainingError, train
from hybridai.demo.simulator import pm_training_spec
from hybridai.protocol.registry import EdgeBudget


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    fill_plant(lake, batches=2)
    return lake


def torch_spec() -> object:
    return pm_training_spec().model_copy(
        update={
            "cloud_family": "mlp-torch",
            "edge_family": "mlp-torch",
            "edge_variant": "dynamic",
            "params": {"cloud": {"hidden_layer_sizes": [128, 64], "epochs": 150}},
            "edge_budget": EdgeBudget(metric="accuracy", max_drop=0.03),
        }
    )


def test_torch_model_trains_exports_and_quantizes(lake: Lake) -> None:
    pytest.importorskip("torch")
    result = train(lake, torch_spec())  # type: ignore[arg-type]

    assert result.metrics["cloud"]["roc_auc"] > 0.8
    assert result.edge_variant["size_ratio"] < 0.6
    assert "torch" in result.lineage["params"]["cloud"]


def test_without_torch_the_error_names_the_extra(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError

    with pytest.raises(TrainingError, match=r"hybridai\[torch\]"):
        train(lake, torch_spec())  # type: ignore[arg-type]
