"""The training job for ``task: regression``: the same rows, splits and lineage as classifiers.

Rows are read and split by ``training.split_rows`` (random, or by group), so calibration
reads the same validation rows back. Each variant is a bagged ensemble (``regression``); the
edge variant is a smaller family judged by ``edge_budget`` on ``r2``. Metrics come from ONNX
Runtime, like every other run, and the export is refused if it disagrees with scikit-learn.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import sklearn

from hybridai.cloud.pipelines import edge_variants, regression
from hybridai.cloud.pipelines.lineage import code_version, reference
from hybridai.cloud.pipelines.training import (
    INPUT_NAME,
    TARGET_OPSET,
    Splits,
    TrainingError,
    TrainingResult,
)
from hybridai.orchestrator.cascade import spread_confidence
from hybridai.protocol.registry import TrainingSpec
from hybridai.serving.providers import create_session

Array = np.ndarray[Any, Any]
MAX_RELATIVE_DIFF = 1e-3  # of the target's spread: float32 trees may split a hair differently


def run_members(artifact: bytes, x: Array) -> tuple[Array, Array]:
    """The ensemble's mean [n] and its members' answers [n, m], by ONNX Runtime on the CPU."""
    threads = os.cpu_count() or 1
    session = create_session(artifact, label="training evaluation", threads=threads).session
    prediction, members = session.run(list(regression.OUTPUT_NAMES), {INPUT_NAME: x})
    return np.asarray(prediction).reshape(-1), np.asarray(members)


def _refuse_unsupported(spec: TrainingSpec) -> None:
    if spec.edge_variant != "family":
        raise TrainingError(
            "a regression ensemble's edge variant is a smaller family (edge_variant: family); "
            "int8 quantization is for classifiers here"
        )
    if spec.hard_examples is not None:
        raise TrainingError(
            "hard examples are labelled with classes; a regression run cannot use them yet"
        )
    if spec.edge_budget is not None and spec.edge_budget.metric != "r2":
        raise TrainingError("a regression run's edge budget is on r2: set edge_budget.metric")
    unknown = sorted(set(spec.metrics) - {"mae", "rmse", "r2"})
    if unknown:
        raise TrainingError(f"unknown metric(s) {', '.join(unknown)}: choose from mae, r2, rmse")


def train(spec: TrainingSpec, splits: Splits, versions: dict[str, int]) -> TrainingResult:
    """Fit, export and measure the edge and cloud ensembles of a regression ``spec``."""
    _refuse_unsupported(spec)
    x, y = splits.x, splits.y
    x_train, y_train = x[splits.train], y[splits.train]
    x_test, y_test = x[splits.test], y[splits.test]
    scale = float(np.std(y_train)) or 1.0
    artifacts: dict[str, bytes] = {}
    metrics: dict[str, dict[str, float]] = {}
    used: dict[str, dict[str, Any]] = {}
    for variant, family in (("cloud", spec.cloud_family), ("edge", spec.edge_family)):
        try:
            artifact, predict, used[variant] = regression.fit_export(
                family,
                spec.params.get(variant, {}),
                spec.seed,
                x_train,
                y_train,
                INPUT_NAME,
                TARGET_OPSET,
            )
        except regression.RegressionError as error:
            raise TrainingError(f"{variant}: {error}") from None
        prediction, members = run_members(artifact, x_test)
        diff = float(np.max(np.abs(members - predict(x_test)))) / scale
        if diff >= MAX_RELATIVE_DIFF:
            raise TrainingError(
                f"the {variant} ONNX export disagrees with the trained model by {diff:.2e} "
                "of the target's spread"
            )
        artifacts[variant] = artifact
        metrics[variant] = regression.metrics(y_test, prediction, len(artifact))
    how = f"family {spec.edge_family}"
    delta = metrics["edge"]["r2"] - metrics["cloud"]["r2"]
    if spec.edge_budget is not None:
        try:
            edge_variants.check_budget(spec.edge_budget, metrics["edge"], metrics["cloud"], how)
        except edge_variants.EdgeVariantError as error:
            raise TrainingError(str(error)) from None
    latency = {
        v: edge_variants.latency_p50_ms(artifacts[v], INPUT_NAME, x_test[0]) for v in artifacts
    }
    report = {
        "how": how,
        "metric": "r2",
        "max_drop": None if spec.edge_budget is None else spec.edge_budget.max_drop,
        "quality_delta": delta
        if spec.edge_budget
        else metrics["edge"]["r2"] - metrics["cloud"]["r2"],
        "size_ratio": len(artifacts["edge"]) / len(artifacts["cloud"]),
        "latency_ratio": latency["edge"] / latency["cloud"],
        "edge_latency_p50_ms": latency["edge"],
        "cloud_latency_p50_ms": latency["cloud"],
    }
    if spec.metrics:
        keep = set(spec.metrics) | {"n_test", "size_bytes"}
        metrics = {v: {k: m for k, m in ms.items() if k in keep} for v, ms in metrics.items()}
    _, members = run_members(artifacts["edge"], x_train)
    spread = members.max(axis=1) - members.min(axis=1)
    band = float(2.0 * spread.max()) or 1.0
    lineage: dict[str, Any] = {
        "query": spec.query,
        "table_versions": versions,
        "rows": {
            "total": len(y),
            "train": len(splits.train),
            "validation": len(splits.validation),
            "test": len(splits.test),
            "dropped_null": int(splits.dropped),
        },
        "split": splits.split,
        "validation_split": splits.validation_split,
        "validation_sha256": splits.validation_digest(),
        "task": "regression",
        "families": {"edge": spec.edge_family, "cloud": spec.cloud_family},
        "edge_variant": {"kind": "family", "how": how},
        "params": used,
        "code_version": code_version(),
        "reference": reference(spec.features, x_train, spread_confidence(members, band)),
        "onnx": {
            "input": INPUT_NAME,
            "outputs": list(regression.OUTPUT_NAMES),
            "n_features": int(x.shape[1]),
            "opset": dict(TARGET_OPSET),
        },
        "sklearn_version": sklearn.__version__,
        "spec": spec.model_dump(),
    }
    return TrainingResult(artifacts, metrics, lineage, report)
