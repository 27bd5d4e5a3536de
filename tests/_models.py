"""Small, real ONNX models for tests, built in milliseconds and cached per session."""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

# ONNX element type for each v2 datatype, so one graph covers every datatype the server maps.
ONNX_TYPES: dict[str, int] = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
# Four values per v2 datatype, including its extremes, all exactly representable.
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, False, True],
    "UINT8": [0, 1, 254, 255],
    "UINT16": [0, 1, 65534, 65535],
    "UINT32": [0, 1, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2**63, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-(2**15), -1, 0, 2**15 - 1],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [-65504.0, -0.5, 0.0, 65504.0],
    "FP32": [-1.5, 0.0, 0.25, 2.0**127],
    "FP64": [-1.0e308, 0.1, 0.0, 1.0e308],
    "BYTES": ["", "a", "héllo wörld", "line\nbreak"],
}
_OPSET = 17
_IR_VERSION = 9


@cache
def train_classifier_onnx(
    n_features: int = 4, seed: int = 0, family: str = "tree", *, zipmap: bool = False
) -> bytes:
    """A small classifier on generated data; input "input" FP32 [None, n_features].

    Outputs are "label" (INT64 [N]) and "probabilities" (FP32 [N, 2]); zipmap is off by default
    so the probabilities are a plain tensor that the v2 protocol can carry.
    """
    x, y = make_classification(
        n_samples=200,
        n_features=n_features,
        n_informative=min(n_features, 3),
        n_redundant=0,
        random_state=seed,
    )
    clf: DecisionTreeClassifier | LogisticRegression
    if family == "tree":
        clf = DecisionTreeClassifier(max_depth=4, random_state=seed)
    elif family == "logistic":
        clf = LogisticRegression()
    else:
        raise ValueError(f"unknown family {family!r}; use 'tree' or 'logistic'")
    clf.fit(x.astype(np.float32), y)
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(clf): {"zipmap": zipmap}},
        target_opset=_OPSET,
    )
    return bytes(onx.SerializeToString())


def _finish(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@cache
def identity_all_types_onnx() -> bytes:
    """One Identity per v2 datatype: input "in_<DT>" [-1, 2] -> output "out_<DT>".

    Also has "fixed" FP32 [2, 3] -> "fixed_out", to exercise fixed-dimension checks.
    """
    inputs, outputs, nodes = [], [], []
    for datatype, elem in ONNX_TYPES.items():
        inputs.append(helper.make_tensor_value_info(f"in_{datatype}", elem, ["batch", 2]))
        outputs.append(helper.make_tensor_value_info(f"out_{datatype}", elem, ["batch", 2]))
        nodes.append(helper.make_node("Identity", [f"in_{datatype}"], [f"out_{datatype}"]))
    inputs.append(helper.make_tensor_value_info("fixed", TensorProto.FLOAT, [2, 3]))
    outputs.append(helper.make_tensor_value_info("fixed_out", TensorProto.FLOAT, [2, 3]))
    nodes.append(helper.make_node("Identity", ["fixed"], ["fixed_out"]))
    return _finish(helper.make_graph(nodes, "identity_all_types", inputs, outputs))


@cache
def add_vectors_onnx() -> bytes:
    """ "sum" = "a" + "b", both FP32 [-1]: vectors of different lengths fail inside ONNX Runtime."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n"])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["m"])
    out = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None])
    node = helper.make_node("Add", ["a", "b"], ["sum"])
    return _finish(helper.make_graph([node], "add_vectors", [a, b], [out]))


@cache
def reshape_onnx() -> bytes:
    """Reshape "data" FP32 [-1] to "shape" INT64 [1] with allowzero: fails on all-zero inputs."""
    data = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["n"])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [1])
    out = helper.make_tensor_value_info("reshaped", TensorProto.FLOAT, [None])
    node = helper.make_node("Reshape", ["data", "shape"], ["reshaped"], allowzero=1)
    return _finish(helper.make_graph([node], "reshape", [data, shape], [out]))


@cache
def slow_classifier_onnx(layers: int = 900, width: int = 512) -> bytes:
    """A deliberately slow classifier (tens of ms per call) with the classifier's signature.

    Input "input" FP32 [None, 4]; outputs "label" INT64 [None] and "probabilities" FP32
    [None, 2]: a stand-in for a model too heavy for its node, so placement tests can make the
    cloud the faster place on loopback.
    """
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        ("w_in", rng.standard_normal((4, width)) * 0.5),
        ("w", rng.standard_normal((width, width)) / np.sqrt(width)),
        ("w_out", rng.standard_normal((width, 2))),
    ]
    inits = [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights]
    nodes = [helper.make_node("MatMul", ["input", "w_in"], ["h0"])]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]))
    nodes += [
        helper.make_node("MatMul", [f"h{layers}", "w_out"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return bytes(model.SerializeToString())


@cache
def mlp_onnx(features: int = 16, width: int = 256, layers: int = 3, classes: int = 3) -> bytes:
    """A small dense MLP with a dynamic batch dimension: where batching pays.

    Input "input" FP32 [batch, features]; outputs "probabilities" FP32 [batch, classes] and
    "label" INT64 [batch]. Weights are fixed by a seed, so answers are reproducible.
    """
    from onnx import numpy_helper

    rng = np.random.default_rng(7)
    sizes = [features] + [width] * layers + [classes]
    inits, nodes, current = [], [], "input"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]))
        current = f"m{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"h{i}"]))
            current = f"h{i}"
    nodes += [
        helper.make_node("Softmax", [current], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    return _finish(graph)
