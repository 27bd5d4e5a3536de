from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from _models import SAMPLES, reshape_onnx, train_classifier_onnx
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.v2 import DATATYPES, InferenceRequest
from hybridai.serving import ModelLoadError, OnnxModel

ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.7, 0.0]]


def request(*inputs: dict[str, Any], **extra: Any) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(inputs), **extra})


def features(
    data: list[Any] | None = None,
    shape: list[int] | None = None,
    datatype: str = "FP32",
    name: str = "input",
) -> dict[str, Any]:
    return {"name": name, "shape": shape or [2, 4], "datatype": datatype, "data": data or ROWS}


@pytest.fixture(scope="module")
def classifier(classifier_onnx: bytes) -> OnnxModel:
    return OnnxModel.load("failure", "1", classifier_onnx)


@pytest.fixture(scope="module")
def identity(identity_onnx: bytes) -> OnnxModel:
    return OnnxModel.load("identity", "3", identity_onnx)


def api_error(model: OnnxModel, req: InferenceRequest) -> ApiError:
    with pytest.raises(ApiError) as info:
        model.run(req)
    assert info.value.status == 400
    return info.value


# --- loading and metadata ---


def test_load_keeps_identity_and_digest(classifier_onnx: bytes) -> None:
    model = OnnxModel.load("failure", "7", classifier_onnx, threads=2)

    assert (model.name, model.version) == ("failure", "7")
    assert model.sha256 == hashlib.sha256(classifier_onnx).hexdigest()


def test_metadata_describes_the_signature(classifier: OnnxModel) -> None:
    meta = classifier.metadata().model_dump()

    assert meta["name"] == "failure"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]


def test_metadata_maps_every_onnx_type_and_keeps_fixed_dims(identity: OnnxModel) -> None:
    inputs = {t.name: (t.datatype, t.shape) for t in identity.metadata().inputs}

    assert {inputs[f"in_{dt}"][0] for dt in DATATYPES} == set(DATATYPES)
    assert all(inputs[f"in_{dt}"] == (dt, [-1, 2]) for dt in DATATYPES)
    assert inputs["fixed"] == ("FP32", [2, 3])


@pytest.mark.parametrize(
    "artifact",
    [b"", b"not an onnx model at all", b"\x08\x07\x12\x04junk\xff\xff"],
    ids=["empty", "text", "garbage-protobuf"],
)
def test_unloadable_artifact_raises_model_load_error(artifact: bytes) -> None:
    with pytest.raises(ModelLoadError, match=r"'broken' version 2.*re-export"):
        OnnxModel.load("broken", "2", artifact)


def test_truncated_artifact_raises_model_load_error(classifier_onnx: bytes) -> None:
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        OnnxModel.load("broken", "1", classifier_onnx[: len(classifier_onnx) // 2])


def test_non_tensor_output_is_refused_with_a_hint() -> None:
    with pytest.raises(ModelLoadError, match="zipmap"):
        OnnxModel.load("zipmapped", "1", train_classifier_onnx(zipmap=True))


def test_threads_must_be_positive(classifier_onnx: bytes) -> None:
    with pytest.raises(ValueError, match="threads"):
        OnnxModel.load("failure", "1", classifier_onnx, threads=0)


# --- warm-up and inference ---


def test_warm_up_runs_on_every_datatype(classifier: OnnxModel, identity: OnnxModel) -> None:
    classifier.warm_up()
    identity.warm_up()


def test_warm_up_failure_is_a_load_error() -> None:
    model = OnnxModel.load("reshape", "1", reshape_onnx())

    with pytest.raises(ModelLoadError, match="warm-up"):
        model.warm_up()


def test_infer_returns_every_output(classifier: OnnxModel) -> None:
    result = classifier.infer({"input": np.array(ROWS, dtype=np.float32)})

    assert list(result) == ["label", "probabilities"]
    assert result["label"].shape == (2,)
    assert result["probabilities"].shape == (2, 2)
    np.testing.assert_allclose(result["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_infer_returns_only_requested_outputs(classifier: OnnxModel) -> None:
    result = classifier.infer({"input": np.array(ROWS, dtype=np.float32)}, ["probabilities"])

    assert list(result) == ["probabilities"]


def test_infer_is_safe_from_many_threads(classifier: OnnxModel) -> None:
    batch = {"input": np.array(ROWS * 8, dtype=np.float32)}
    expected = classifier.infer(batch)["label"]

    with ThreadPoolExecutor(8) as pool:
        labels = list(pool.map(lambda _: classifier.infer(batch)["label"], range(32)))

    assert all(np.array_equal(label, expected) for label in labels)


def test_run_answers_a_v2_request(classifier: OnnxModel) -> None:
    response = classifier.run(request(features(), id="req-42"))

    assert (response.model_name, response.model_version, response.id) == ("failure", "1", "req-42")
    outputs = {o.name: o for o in response.outputs}
    assert outputs["label"].datatype == "INT64"
    assert outputs["label"].shape == [2]
    assert outputs["probabilities"].datatype == "FP32"
    assert outputs["probabilities"].shape == [2, 2]
    assert len(outputs["probabilities"].data) == 4


def test_run_agrees_with_infer(classifier: OnnxModel) -> None:
    response = classifier.run(request(features()))
    direct = classifier.infer({"input": np.array(ROWS, dtype=np.float32)})

    assert response.outputs[0].data == direct["label"].tolist()


def test_run_honours_requested_outputs_in_order(classifier: OnnxModel) -> None:
    req = request(features(), outputs=[{"name": "probabilities"}, {"name": "label"}])

    response = classifier.run(req)

    assert [o.name for o in response.outputs] == ["probabilities", "label"]


def test_run_round_trips_every_datatype(identity: OnnxModel) -> None:
    inputs = [
        {"name": f"in_{dt}", "shape": [2, 2], "datatype": dt, "data": SAMPLES[dt]}
        for dt in DATATYPES
    ]
    inputs.append({"name": "fixed", "shape": [2, 3], "datatype": "FP32", "data": [0.0] * 6})

    response = identity.run(request(*inputs))

    outputs = {o.name: o for o in response.outputs}
    for dt in DATATYPES:
        assert outputs[f"out_{dt}"].datatype == dt
        assert outputs[f"out_{dt}"].shape == [2, 2]
        assert outputs[f"out_{dt}"].data == SAMPLES[dt]


# --- request validation ---


def test_unknown_input_is_named(classifier: OnnxModel) -> None:
    error = api_error(classifier, request(features(), features(name="bogus")))

    assert error.code == ErrorCode.INPUT_NOT_FOUND
    assert "'bogus'" in error.message
    assert "'input' (FP32 [-1, 4])" in error.message


def test_missing_input_is_named(identity: OnnxModel) -> None:
    error = api_error(identity, request(features(name="in_FP32", shape=[4, 2])))

    assert error.code == ErrorCode.INPUT_NOT_FOUND
    assert "missing" in error.message
    assert "'in_BOOL' (BOOL [-1, 2])" in error.message


def test_duplicate_input_is_refused(classifier: OnnxModel) -> None:
    error = api_error(classifier, request(features(), features()))

    assert error.code == ErrorCode.BAD_REQUEST
    assert "more than once" in error.message


def test_datatype_mismatch_names_expected_and_received(classifier: OnnxModel) -> None:
    error = api_error(classifier, request(features(datatype="FP64")))

    assert error.code == ErrorCode.DATATYPE_MISMATCH
    assert "'input' must be FP32 but is FP64" in error.message


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        (ROWS[0], [4]),
        ([[row] for row in ROWS], [2, 1, 4]),
        ([row[:3] for row in ROWS], [2, 3]),
    ],
    ids=["rank-too-low", "rank-too-high", "fixed-dim-differs"],
)
def test_shape_mismatch_names_expected_and_received(
    classifier: OnnxModel, data: list[Any], shape: list[int]
) -> None:
    error = api_error(classifier, request(features(data=data, shape=shape)))

    assert error.code == ErrorCode.SHAPE_MISMATCH
    assert f"'input' must have shape [-1, 4] (-1: any size) but has shape {shape}" in (
        error.message
    )


def test_element_count_mismatch_is_a_shape_mismatch(classifier: OnnxModel) -> None:
    error = api_error(classifier, request(features(data=ROWS[0] + [1.0], shape=[2, 4])))

    assert error.code == ErrorCode.SHAPE_MISMATCH


def test_unknown_output_is_a_bad_request(classifier: OnnxModel) -> None:
    error = api_error(classifier, request(features(), outputs=[{"name": "score"}]))

    assert error.code == ErrorCode.BAD_REQUEST
    assert "'score'" in error.message
    assert "label, probabilities" in error.message


def test_float_overflow_is_a_datatype_mismatch(add_onnx: bytes) -> None:
    model = OnnxModel.load("add", "1", add_onnx)
    req = request(
        {"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0e300]},
        {"name": "b", "shape": [1], "datatype": "FP32", "data": [1.0]},
    )

    error = api_error(model, req)

    assert error.code == ErrorCode.DATATYPE_MISMATCH
    assert "'a' holds a value out of range for FP32" in error.message


def test_runtime_failure_is_an_invalid_input(add_onnx: bytes) -> None:
    model = OnnxModel.load("add", "1", add_onnx)
    req = request(
        {"name": "a", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]},
        {"name": "b", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]},
    )

    error = api_error(model, req)

    assert error.code == ErrorCode.INVALID_INPUT
    assert "'add' version 1" in error.message


def test_infer_checks_numpy_dtypes(classifier: OnnxModel) -> None:
    for array in (np.zeros((1, 4), np.float64), np.zeros((1, 4), np.complex64)):
        with pytest.raises(ApiError) as info:
            classifier.infer({"input": array})
        assert info.value.code == ErrorCode.DATATYPE_MISMATCH
