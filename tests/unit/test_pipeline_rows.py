"""Rows as the pipelines read them: class labels, row content hashes, hard-example records."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from hybridai.cloud.pipelines.hard_examples import decode
from hybridai.cloud.pipelines.lineage import pack_hashes, row_hashes, unpack_hashes
from hybridai.cloud.pipelines.retraining import retraining_spec
from hybridai.cloud.pipelines.training import TrainingError, class_labels, targets
from hybridai.protocol.lifecycle import RetrainingPolicySpec
from hybridai.protocol.registry import HardExamplesSpec, TrainingSpec


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pa.array([0, 2, 1]), [0, 2, 1]),
        (pa.array([0.0, 1.0, 4.0]), [0, 1, 4]),
        (pa.array([True, False]), [1, 0]),
        (pa.chunked_array([[0, 1], [2]]), [0, 1, 2]),
    ],
)
def test_class_labels_accept_whole_numbers(values: pa.Array, expected: list[int]) -> None:
    assert class_labels(values, "y").tolist() == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (pa.array(["cat", "dog"]), "not class numbers"),
        (pa.array([0.0, 0.5]), "fractions"),
        (pa.array([0.0, float("inf")]), "fractions or infinities"),
        (pa.array([-1, 0]), "negative"),
    ],
)
def test_class_labels_refuse_what_is_not_a_class(values: pa.Array, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        class_labels(values, "y")


def test_regression_targets_are_finite_numbers() -> None:
    assert targets(pa.chunked_array([[1.5, -2]]), "y").tolist() == [1.5, -2.0]
    with pytest.raises(TrainingError, match="a number"):
        targets(pa.chunked_array([["a"]]), "y")
    with pytest.raises(TrainingError, match="infinities"):
        targets(pa.chunked_array([[float("nan")]]), "y")


def test_row_hashes_are_by_float32_content_and_survive_packing() -> None:
    x = np.array([[1.0, 0.0], [1.0, -0.0], [1.0 + 1e-12, 0.0], [2.0, 3.0]])
    hashes = row_hashes(x)
    assert len(hashes) == 2  # -0.0 is 0.0, and 1 + 1e-12 is 1.0 in float32
    assert unpack_hashes(pack_hashes(hashes)) == hashes
    with pytest.raises(ValueError):
        unpack_hashes("AAAA")  # 3 bytes: not whole hashes


def tensor(name: str, array: list[list[float]] | list[int]) -> dict[str, object]:
    data = np.asarray(array)
    return {"name": name, "shape": list(data.shape), "data": data.reshape(-1).tolist()}


def test_a_hard_example_decodes_to_rows_and_the_clouds_classes() -> None:
    inputs = json.dumps([tensor("input", [[0.1, 0.2], [0.3, 0.4]])])
    with_label = json.dumps([tensor("label", [2, 0]), tensor("probabilities", [[0, 1, 0]] * 2)])
    only_probabilities = json.dumps([tensor("probabilities", [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])])

    decoded = decode(inputs, with_label)
    assert decoded is not None
    x, y = decoded
    assert x.shape == (2, 2) and y.tolist() == [2, 0]  # the label output wins
    assert (got := decode(inputs, only_probabilities)) is not None and got[1].tolist() == [2, 0]
    assert decode(None, with_label) is None  # inputs withheld by a data policy
    assert decode(inputs, json.dumps([tensor("label", [1])])) is None  # rows do not match
    assert decode("pseudonymised:abc", with_label) is None


def test_a_retraining_adds_hard_examples_when_its_policy_names_a_label_source() -> None:
    spec = TrainingSpec(model_name="m", query="SELECT 1", features=["x"], label="y", deploy=False)
    plain = retraining_spec(spec, RetrainingPolicySpec(mode="auto-to-production"))
    assert plain.deploy and plain.hard_examples is None
    people = RetrainingPolicySpec(mode="auto-to-staged", hard_example_labels="human")
    with_hard = retraining_spec(spec, people)
    assert not with_hard.deploy and with_hard.hard_examples is not None
    assert with_hard.hard_examples.label_source == "human"
    kept = spec.model_copy(update={"hard_examples": HardExamplesSpec(max_rows=10)})
    assert retraining_spec(kept, people).hard_examples == HardExamplesSpec(
        label_source="human", max_rows=10
    )
    with pytest.raises(ValueError):
        RetrainingPolicySpec(hard_example_labels="the intern")  # type: ignore[arg-type]
