"""Regression models that say how unsure they are: bagged ensembles exported as one ONNX graph.

A cascade escalates what the edge model is unsure of. A regressor's single number carries no
such signal, so each variant here is an ensemble of ``members`` models of one family, each fitted
on a bootstrap sample of the training rows (seed + i). The exported graph answers
``prediction`` FP32 [n, 1] (the members' mean) and ``members`` FP32 [n, m] (each member's
answer), last, so the edge's cascade reads it by default; the ``spread`` measure turns a row's
range of answers into confidence (``orchestrator.cascade.spread_confidence``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, compose, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

Array = np.ndarray[Any, Any]
OUTPUT_NAMES = ("prediction", "members")
DEFAULT_MEMBERS = 5


class RegressionError(ValueError):
    """The regression run cannot go on; the message says what to change."""


def _member(family: str, seed: int, params: dict[str, Any]) -> RegressorMixin:
    if family == "logistic":  # the linear family: ridge regression
        return Pipeline([("scale", StandardScaler()), ("model", Ridge(**params))])
    if family == "tree":
        return DecisionTreeRegressor(random_state=seed, **{"max_depth": 4, **params})
    if family == "forest":
        defaults = {"n_estimators": 30, "min_samples_leaf": 5}
        return RandomForestRegressor(random_state=seed, **{**defaults, **params})
    if family == "gbm":
        defaults = {"n_estimators": 150, "max_depth": 3}
        return GradientBoostingRegressor(random_state=seed, **{**defaults, **params})
    if family == "mlp":
        mlp = MLPRegressor(
            random_state=seed, **{"hidden_layer_sizes": (64, 32), "max_iter": 1000, **params}
        )
        return Pipeline([("scale", StandardScaler()), ("model", mlp)])
    raise RegressionError(
        f"family {family!r} has no regression variant here: use logistic (ridge), tree, "
        "forest, gbm or mlp"
    )


def _one_graph(members: list[onnx.ModelProto], input_name: str, n_features: int) -> bytes:
    """The members side by side on one input: ``prediction`` (mean) and ``members``."""
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    opsets: dict[str, int] = {}
    answers = []
    for i, model in enumerate(members):
        prefixed = compose.add_prefix(model, f"m{i}_")
        graph = prefixed.graph
        nodes.append(helper.make_node("Identity", [input_name], [graph.input[0].name]))
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        answers.append(graph.output[0].name)
        for opset in prefixed.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    nodes.append(helper.make_node("Concat", answers, ["members"], axis=1))
    nodes.append(helper.make_node("ReduceMean", ["members"], ["prediction"], axes=[1], keepdims=1))
    graph = helper.make_graph(
        nodes,
        "ensemble",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, n_features])],
        [
            helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("members", TensorProto.FLOAT, [None, len(members)]),
        ],
        initializers,
    )
    merged = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    merged.ir_version = members[0].ir_version
    onnx.checker.check_model(merged)
    return bytes(merged.SerializeToString())


def fit_export(
    family: str,
    params: dict[str, Any],
    seed: int,
    x: Array,
    y: Array,
    input_name: str,
    opset: dict[str, int],
) -> tuple[bytes, Callable[[Array], Array], dict[str, Any]]:
    """Fit ``members`` bootstrap models; ONNX bytes, a predict (members' answers), params."""
    params = dict(params)
    m = int(params.pop("members", DEFAULT_MEMBERS))
    if not 2 <= m <= 50:
        raise RegressionError(f"members must be 2..50 (got {m}): the spread needs two answers")
    rng = np.random.default_rng(seed)
    fitted = []
    exported = []
    for i in range(m):
        rows = rng.integers(0, len(x), len(x))  # a bootstrap sample: members disagree off-data
        try:
            member = _member(family, seed + i, params)
        except TypeError as error:
            raise RegressionError(f"params for {family!r} are not valid: {error}") from None
        with warnings.catch_warnings():  # an MLP short of convergence is judged by its metrics
            warnings.simplefilter("ignore", ConvergenceWarning)
            member.fit(x[rows], y[rows])
        fitted.append(member)
        exported.append(
            convert_sklearn(
                member,
                initial_types=[(input_name, FloatTensorType([None, x.shape[1]]))],
                target_opset=opset,
            )
        )

    def predict(rows: Array) -> Array:
        return np.column_stack([f.predict(rows) for f in fitted])

    used = {"family": family, "members": m, **params}
    return _one_graph(exported, input_name, x.shape[1]), predict, used


def metrics(y: Array, prediction: Array, size: int) -> dict[str, float]:
    """Held-out quality of the ensemble's mean answer."""
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1)
    return {
        "mae": float(mean_absolute_error(y, prediction)),
        "rmse": float(np.sqrt(mean_squared_error(y, prediction))),
        "r2": float(r2_score(y, prediction)),
        "n_test": float(len(y)),
        "size_bytes": float(size),
    }
