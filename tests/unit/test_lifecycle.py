"""Pipeline files, drift measures, the retraining decision and bundle checks, in process."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from hybridai.edge.models.bundle import BundleError, read_bundle
from hybridai.edge.models.drift import DriftMonitor
from hybridai.orchestrator.drift import (
    DriftObservation,
    RetrainingPolicy,
    bin_index,
    psi,
    retraining_due,
)
from hybridai.protocol.fleet import ModelAssignment
from hybridai.protocol.pipeline import EXAMPLE, PipelineError, pipeline_spec
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse


def test_the_documented_pipeline_maps_onto_a_training_spec() -> None:
    spec = pipeline_spec(yaml.safe_load(EXAMPLE))

    assert spec.model_name == "pm" and spec.group == "machine_id"
    assert (spec.cloud_family, spec.edge_family, spec.edge_variant) == ("mlp", "mlp", "dynamic")
    assert spec.edge_budget is not None and spec.edge_budget.max_drop == 0.01
    assert spec.params["cloud"] == {"hidden_layer_sizes": [64, 32]}
    assert (spec.test_share, spec.validation_share, spec.seed) == (0.25, 0.2, 0)
    assert spec.metrics == ["accuracy", "f1", "roc_auc"]


def test_a_smaller_edge_family_instead_of_quantization() -> None:
    doc = yaml.safe_load(EXAMPLE)
    doc["model"] = {"family": "gbm"}
    doc["edge"] = {"family": "tree"}
    spec = pipeline_spec(doc)
    assert (spec.cloud_family, spec.edge_family, spec.edge_variant) == ("gbm", "tree", "family")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"edge_budjet": {}}, "unknown key"),
        ({"dataset": {}}, "dataset.query"),
        ({"edge": {"quantize": "dynamic", "family": "tree"}}, "not both"),
        ({"model": {"family": "svm"}}, "family: Input should be"),
        ({"edge": {"quantize": "int4"}}, "edge_variant"),
        ({"split": {"test": 2}}, "test_share"),
    ],
)
def test_bad_pipelines_name_what_to_fix(change: dict[str, object], message: str) -> None:
    doc = {**yaml.safe_load(EXAMPLE), **change}
    with pytest.raises(PipelineError, match=message):
        pipeline_spec(doc)


def test_psi_is_zero_on_the_reference_and_grows_with_shift() -> None:
    reference = [0.25, 0.25, 0.25, 0.25]
    assert psi(reference, [25, 25, 25, 25]) == pytest.approx(0.0)
    assert 0 < psi(reference, [20, 30, 25, 25]) < 0.1
    assert psi(reference, [0, 0, 0, 100]) > 2
    assert psi(reference, [0, 0, 0, 0]) == 0.0
    with pytest.raises(ValueError):
        psi(reference, [1, 2])
    assert [bin_index([1.0, 2.0], v) for v in (0.5, 1.0, 1.5, 2.0, 9.0)] == [0, 1, 1, 2, 2]


def _obs(
    psi_max: float = 0.0, window: int = 100, shift: float = 0.0, hard: int = 0
) -> DriftObservation:
    return DriftObservation("d1", window, psi_max, shift, hard)


def test_retraining_decision() -> None:
    auto = RetrainingPolicy(mode="auto-to-production", psi_threshold=0.25, hard_examples=10)
    assert retraining_due(auto, [_obs(0.3)], 100.0, None, False).retrain
    assert "PSI" in retraining_due(auto, [_obs(0.3)], 100.0, None, False).reason
    assert not retraining_due(auto, [_obs(0.1)], 100.0, None, False).retrain
    assert not retraining_due(auto, [_obs(0.3, window=10)], 100.0, None, False).retrain
    assert retraining_due(auto, [_obs(shift=0.2)], 100.0, None, False).retrain
    assert retraining_due(auto, [_obs(hard=6), _obs(hard=4)], 100.0, None, False).retrain
    assert not retraining_due(auto, [_obs(0.3)], 100.0, 50.0, False).retrain  # cooling down
    assert not retraining_due(auto, [_obs(0.3)], 100.0, None, True).retrain  # run in progress
    manual = RetrainingPolicy(mode="manual")
    assert not retraining_due(manual, [_obs(9.0)], 100.0, None, False).retrain


def _assignment(version: str = "1") -> ModelAssignment:
    reference = {
        "features": {"a": {"edges": [0.0], "fractions": [0.5, 0.5]}},
        "confidence": {"edges": [0.8], "fractions": [0.5, 0.5], "mean": 0.9},
    }
    return ModelAssignment(
        name="m",
        version=version,
        variant="edge",
        sha256="0" * 64,
        size=1,
        artifact_path="/x",
        reference=reference,
    )


def _served(values: list[float], confidence: float) -> tuple[InferenceRequest, InferenceResponse]:
    request = InferenceRequest.model_validate(
        {
            "inputs": [
                {"name": "input", "shape": [len(values), 1], "datatype": "FP32", "data": values}
            ]
        }
    )
    probabilities = [x for _ in values for x in (1 - confidence, confidence)]
    response = InferenceResponse.model_validate(
        {
            "model_name": "m",
            "outputs": [
                {
                    "name": "probabilities",
                    "shape": [len(values), 2],
                    "datatype": "FP32",
                    "data": probabilities,
                }
            ],
        }
    )
    return request, response


def test_drift_monitor_reports_psi_and_confidence_for_the_served_version() -> None:
    assignments = [_assignment("1")]
    monitor = DriftMonitor(lambda: assignments, window=100)
    monitor.observe("m", "1", *_served([-1.0, 1.0] * 50, 0.9))
    calm = monitor.report()["m"]
    assert calm.window == 100 and calm.psi["a"] == pytest.approx(0.0)
    assert calm.confidence_shift == pytest.approx(0.0, abs=1e-6)

    monitor.observe("m", "1", *_served([5.0] * 100, 0.6))  # all in the upper bin, unsure
    shifted = monitor.report()["m"]
    assert shifted.psi_max > 2 and shifted.confidence_shift == pytest.approx(0.3)

    monitor.hard_example("m", "1")
    assert monitor.report()["m"].hard_examples == 1
    assignments[:] = [_assignment("2")]  # a new version: its window starts empty
    assert monitor.report() == {}


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_bundles_that_do_not_prove_their_content_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    path.write_bytes(b"not a tar")
    with pytest.raises(BundleError, match="cannot read"):
        read_bundle(path)
    path.write_bytes(_tar({"x": b"1"}))
    with pytest.raises(BundleError, match="manifest"):
        read_bundle(path)
    manifest = {
        "format": "hybridai-bundle/1",
        "artifacts": {"edge": {"file": "artifacts/edge.onnx", "sha256": "0" * 64}},
        "desired": {"device_id": "*", "generation": "bundle-x", "models": []},
    }
    path.write_bytes(
        _tar({"manifest.json": json.dumps(manifest).encode(), "artifacts/edge.onnx": b"tampered"})
    )
    with pytest.raises(BundleError, match="does not match"):
        read_bundle(path)
