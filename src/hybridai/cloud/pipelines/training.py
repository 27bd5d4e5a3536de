"""The training job: lake query -> split -> edge and cloud models -> ONNX -> metrics, lineage.

Rows are split three ways: train (fitted on), validation (cascade thresholds are calibrated on
it, ``cloud/calibration.py``) and test (metrics, never fitted on), by group when the spec names
one. Rows are put in a canonical order first, so ``split_rows`` on the same table versions gives
the same three splits again; lineage records a digest of the validation rows to prove it.

Metrics are computed by running the exported ONNX models with ONNX Runtime, because that is
what the fleet and the cloud serve; the export is refused if it disagrees with scikit-learn.
Lineage records the table versions the query read, so the exact rows can be read again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import sklearn
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.class_weight import compute_sample_weight

from hybridai.cloud.data.lake import Lake, LakeQueryError
from hybridai.cloud.pipelines import edge_variants, hard_examples
from hybridai.cloud.pipelines.lineage import code_version, reference, row_digests, row_hashes
from hybridai.protocol.registry import TrainingSpec
from hybridai.serving.providers import create_session

MIN_ROWS = 50
INPUT_NAME = "input"
OUTPUT_NAMES = ("label", "probabilities")
# Conservative opsets, so edges with an older ONNX Runtime can load what the cloud trains.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MAX_PROBABILITY_DIFF = 1e-4
_GROUP_SPLIT_TRIES = 20

Array = np.ndarray[Any, Any]


class TrainingError(ValueError):
    """The run cannot produce a trustworthy model; the message says what to change."""


@dataclass(frozen=True)
class TrainingResult:
    """ONNX bytes per variant ("edge", "cloud"), their ONNX-measured metrics, lineage."""

    artifacts: dict[str, bytes]
    metrics: dict[str, dict[str, float]]
    lineage: dict[str, Any]
    # The edge variant against the cloud one: size, in-process p50 latency, quality (timed,
    # so kept apart from the reproducible metrics above).
    edge_variant: dict[str, Any] = field(default_factory=dict)


def _model(family: str, seed: int, params: dict[str, Any] | None = None) -> ClassifierMixin:
    """Build a fresh estimator, weighting class imbalance wherever it is supported."""
    params = dict(params or {})
    if family == "mlp":  # standardised inside the graph unless params say scale: false
        scale = bool(params.pop("scale", True))
        params.setdefault("hidden_layer_sizes", (64, 32))
        params.setdefault("max_iter", 500)
        mlp = MLPClassifier(random_state=seed, **params)
        return Pipeline([("scale", StandardScaler()), ("model", mlp)]) if scale else mlp
    if params:
        raise TrainingError(f"family {family!r} takes no params (got {sorted(params)})")
    if family == "logistic":
        return Pipeline(
            [
                ("scale", StandardScaler()),
                ("model", LogisticRegression(class_weight="balanced", max_iter=2000)),
            ]
        )
    if family == "tree":  # small enough for a sensor gateway
        return DecisionTreeClassifier(max_depth=4, class_weight="balanced", random_state=seed)
    if family == "forest":
        return RandomForestClassifier(
            n_estimators=100, min_samples_leaf=5, class_weight="balanced", random_state=seed
        )
    if family == "gbm":
        # HistGradientBoosting does not export with this skl2onnx/onnx pair; this one does.
        return GradientBoostingClassifier(n_estimators=150, max_depth=3, random_state=seed)
    raise TrainingError(f"unknown model family {family!r}")


def _fit(model: ClassifierMixin, x: Array, y: Array) -> None:
    if isinstance(model, GradientBoostingClassifier):  # no class_weight: weigh the samples
        model.fit(x, y, sample_weight=compute_sample_weight("balanced", y))
    else:
        model.fit(x, y)


def _to_onnx(model: ClassifierMixin, n_features: int) -> bytes:
    onnx_model = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return bytes(onnx_model.SerializeToString())


def run_onnx(artifact: bytes, x: Array) -> tuple[Array, Array]:
    # On the CPU: the registry's metrics must not depend on the machine that trained the model.
    threads = os.cpu_count() or 1
    session = create_session(artifact, label="training evaluation", threads=threads).session
    label, probabilities = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    return np.asarray(label), np.asarray(probabilities)


def _metrics(y: Array, label: Array, probabilities: Array, size: int) -> dict[str, float]:
    """Quality on held-out rows; k > 2 classes: macro averages and one-vs-rest ROC AUC."""
    k = probabilities.shape[1]
    if k == 2:
        averaged: dict[str, Any] = {"zero_division": 0}
        auc = float(roc_auc_score(y, probabilities[:, 1]))
    else:
        averaged = {"average": "macro", "zero_division": 0, "labels": list(range(k))}
        scores = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 rounding
        auc = float(roc_auc_score(y, scores, multi_class="ovr", labels=list(range(k))))
    metrics = {
        "accuracy": float(accuracy_score(y, label)),
        "f1": float(f1_score(y, label, **averaged)),
        "roc_auc": auc,
        "precision": float(precision_score(y, label, **averaged)),
        "recall": float(recall_score(y, label, **averaged)),
        "n_test": float(len(y)),
        "classes": float(k),
        "size_bytes": float(size),
    }
    if k == 2:
        metrics["positive_rate"] = float(np.mean(y))
    return metrics


def _load(table: pa.Table, spec: TrainingSpec) -> tuple[Array, Array, Array | None, int]:
    """Features (float32), labels (0/1) and groups; rows with a null anywhere are dropped."""
    needed = [*spec.features, spec.label] + ([spec.group] if spec.group else [])
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise TrainingError(
            f"the query does not return column(s) {', '.join(missing)}; "
            f"it returns {', '.join(table.column_names)}"
        )
    table = table.select(needed)
    kept = table.drop_null()
    dropped = table.num_rows - kept.num_rows
    try:
        x = np.column_stack(
            [kept.column(f).to_numpy().astype(np.float32) for f in spec.features]
        ).reshape(kept.num_rows, len(spec.features))
    except (TypeError, ValueError, pa.ArrowException) as error:
        raise TrainingError(f"features must be numeric: {error}") from error
    if spec.task == "regression":
        y = targets(kept.column(spec.label), spec.label)
    else:
        y = class_labels(kept.column(spec.label), spec.label)
    groups = kept.column(spec.group).to_numpy(zero_copy_only=False) if spec.group else None
    return x, y, groups, dropped


def class_labels(column: pa.ChunkedArray | pa.Array, name: str) -> Array:
    """Class indices 0..k-1 as int64; anything else is refused with what to do about it.

    Integers (or floats holding whole numbers, or booleans) are accepted; text, fractions and
    negative numbers are not, since a class index is what the model's ``label`` output returns
    and what column i of its ``probabilities`` stands for.
    """
    kind = column.type
    if pa.types.is_boolean(kind):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TrainingError(
            f"label column {name!r} is {kind}, not class numbers: map each class to 0, 1, 2, ... "
            "in the query (e.g. CASE WHEN ... THEN 0 ... END)"
        )
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    if values.size and (not np.isfinite(values).all() or (values != np.round(values)).any()):
        raise TrainingError(
            f"label column {name!r} holds fractions or infinities: a classifier needs class "
            "numbers 0, 1, 2, ... (round or map them in the query)"
        )
    if values.size and values.min() < 0:
        raise TrainingError(
            f"label column {name!r} holds negative numbers: classes are numbered 0, 1, 2, ..."
        )
    return values.astype(np.int64)


def targets(column: pa.ChunkedArray, name: str) -> Array:
    """Regression targets as float64: numbers, finite."""
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise TrainingError(f"label column {name!r} is {kind}: a regression target is a number")
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    if not np.isfinite(values).all():
        raise TrainingError(f"label column {name!r} holds infinities or NaN: filter them out")
    return values


def _check_rows(y: Array, regression: bool = False) -> None:
    if len(y) < MIN_ROWS:
        raise TrainingError(
            f"the query yields {len(y)} usable rows; at least {MIN_ROWS} are needed"
        )
    if regression:
        return
    classes = set(np.unique(y).tolist())
    if len(classes) < 2:
        raise TrainingError(
            f"every row has label {classes.pop()}: at least two classes are needed to train"
        )
    if classes != set(range(len(classes))):
        raise TrainingError(
            f"labels must number the classes 0..{len(classes) - 1} without gaps, got "
            f"{sorted(classes)[:10]}: renumber them in the query"
        )


def _split(
    y: Array, groups: Array | None, spec: TrainingSpec
) -> tuple[Array, Array, dict[str, Any]]:
    """Train/test indices; both sides must hold every class so every metric is defined."""
    regression = spec.task == "regression"
    if groups is None:
        kind = ShuffleSplit if regression else StratifiedShuffleSplit
        splitter = kind(n_splits=1, test_size=spec.test_share, random_state=spec.seed)
        try:
            train, test = next(splitter.split(np.zeros(len(y)), y))
        except ValueError as error:
            raise TrainingError(f"cannot split the rows: {error}") from error
        return train, test, {"kind": "random" if regression else "stratified", "seed": spec.seed}
    if len(np.unique(groups)) < 2:
        raise TrainingError(f"a split on {spec.group!r} needs at least two distinct groups")
    for attempt in range(_GROUP_SPLIT_TRIES):
        seed = spec.seed + attempt
        splitter_g = GroupShuffleSplit(n_splits=1, test_size=spec.test_share, random_state=seed)
        train, test = next(splitter_g.split(np.zeros(len(y)), y, groups))
        k = len(np.unique(y))
        if regression or (len(np.unique(y[train])) == k and len(np.unique(y[test])) == k):
            held_out = sorted(str(g) for g in np.unique(groups[test]))
            split = {"kind": "group", "group": spec.group, "seed": seed, "test_groups": held_out}
            return train, test, split
    raise TrainingError(
        f"no split on {spec.group!r} puts every class on both sides: add data from more groups"
    )


@dataclass(frozen=True)
class Splits:
    """The rows of one run and their three-way split (indices into ``x``/``y``)."""

    x: Array
    y: Array
    train: Array
    validation: Array
    test: Array
    split: dict[str, Any]
    validation_split: dict[str, Any] | None
    dropped: int

    def validation_digest(self) -> str:
        """sha256 of the validation rows: calibration checks it re-read exactly these."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.x[self.validation]).tobytes())
        digest.update(np.ascontiguousarray(self.y[self.validation]).tobytes())
        return digest.hexdigest()


def query_rows(lake: Lake, spec: TrainingSpec, versions: dict[str, int]) -> pa.Table:
    try:
        return lake.query(spec.query, versions=versions)
    except LakeQueryError as error:
        raise TrainingError(f"the training query failed: {error}") from error


def split_rows(table: pa.Table, spec: TrainingSpec) -> Splits:
    """Load, order canonically and split train / validation / test, reproducibly."""
    needed = [*spec.features, spec.label] + ([spec.group] if spec.group else [])
    present = [c for c in dict.fromkeys(needed) if c in table.column_names]
    table = table.sort_by([(c, "ascending") for c in present])  # query order is not stable
    x, y, groups, dropped = _load(table, spec)
    _check_rows(y, spec.task == "regression")
    rest, test_idx, split = _split(y, groups, spec)
    validation_split: dict[str, Any] | None = None
    train_idx, validation_idx = rest, rest[:0]
    if spec.validation_share > 0:
        inner = spec.model_copy(update={"test_share": spec.validation_share})
        sub_groups = None if groups is None else groups[rest]
        try:
            fit, held, validation_split = _split(y[rest], sub_groups, inner)
        except TrainingError:  # too few groups left: split rows, stratified, instead
            fit, held, validation_split = _split(y[rest], None, inner)
        if "test_groups" in validation_split:
            validation_split["validation_groups"] = validation_split.pop("test_groups")
        train_idx, validation_idx = rest[fit], rest[held]
    return Splits(x, y, train_idx, validation_idx, test_idx, split, validation_split, dropped)


def _fit_export(
    family: str, params: dict[str, Any], seed: int, x: Array, y: Array
) -> tuple[bytes, Any, dict[str, Any]]:
    """Fit ``family`` and export it: ONNX bytes, its in-framework predict_proba, params used."""
    if family == "mlp-torch":
        try:
            from hybridai.cloud.pipelines import torch_models
        except ImportError as error:  # pragma: no cover - the module itself imports no torch
            raise TrainingError(str(error)) from error
        try:
            return torch_models.fit_export(x, y, params, seed, INPUT_NAME, TARGET_OPSET[""])
        except ImportError as error:
            raise TrainingError(str(error)) from error
    model = _model(family, seed, params)
    _fit(model, x, y)
    return _to_onnx(model, x.shape[1]), model.predict_proba, {"family": family, **params}


def _reported(metrics: dict[str, float], wanted: list[str]) -> dict[str, float]:
    """Keep the named quality metrics (all when none are named) and the size/latency ones."""
    quality = {"accuracy", "f1", "roc_auc", "precision", "recall"}
    unknown = sorted(set(wanted) - quality)
    if unknown:
        raise TrainingError(
            f"unknown metric(s) {', '.join(unknown)}: choose from {', '.join(sorted(quality))}"
        )
    return {k: v for k, v in metrics.items() if not wanted or k not in quality or k in wanted}


def _with_hard_examples(
    lake: Lake, spec: TrainingSpec, versions: dict[str, int], splits: Splits
) -> tuple[Array, Array, dict[str, Any] | None]:
    """The training rows, plus the model's labelled hard examples when the spec asks.

    Hard rows join the training split only; one whose features equal a validation or test
    row's is left out (it would leak into what the run is judged on), as is one with a class
    the query's rows do not have.
    """
    x_train, y_train = splits.x[splits.train], splits.y[splits.train]
    wanted = spec.hard_examples
    if wanted is None:
        return x_train, y_train, None
    hard = hard_examples.rows(
        lake,
        wanted.model or spec.model_name,
        len(spec.features),
        wanted.label_source,
        versions,
        wanted.max_rows,
    )
    held = row_hashes(splits.x[np.concatenate([splits.validation, splits.test])])
    k = int(splits.y.max()) + 1
    keep = np.asarray([h not in held for h in row_digests(hard.x)], dtype=bool)
    known = hard.y < k
    used = keep & known
    report = {
        "label_source": wanted.label_source,
        "requests": hard.requests,
        "rows": int(used.sum()),
        "left_out": {
            **{k_: v for k_, v in hard.counts.items() if k_.startswith(("un", "wrong"))},
            "held_out_duplicates": int((~keep).sum()),
            "unknown_class": int((keep & ~known).sum()),
        },
        "labelled": {"by_cloud": hard.counts["by_cloud"], "by_human": hard.counts["by_human"]},
    }
    if not used.any():
        return x_train, y_train, report
    x_all = np.vstack([x_train, hard.x[used]])
    return x_all, np.concatenate([y_train, hard.y[used]]), report


def train(lake: Lake, spec: TrainingSpec) -> TrainingResult:
    """Train the edge and cloud variants of ``spec`` on the lake as it is now."""
    versions = lake.versions()
    splits = split_rows(query_rows(lake, spec, versions), spec)
    if spec.task == "regression":
        from hybridai.cloud.pipelines import regression_training  # it builds on this module

        return regression_training.train(spec, splits, versions)
    x, y, test_idx = splits.x, splits.y, splits.test
    x_test, y_test = x[test_idx], y[test_idx]
    x_train, y_train, hard_report = _with_hard_examples(lake, spec, versions, splits)

    artifacts: dict[str, bytes] = {}
    metrics: dict[str, dict[str, float]] = {}
    used: dict[str, dict[str, Any]] = {}
    plan = [("cloud", spec.cloud_family)]
    if spec.edge_variant == "family":
        plan.append(("edge", spec.edge_family))
    for variant, family in plan:
        artifact, predict_proba, used[variant] = _fit_export(
            family, spec.params.get(variant, {}), spec.seed, x_train, y_train
        )
        label, probabilities = run_onnx(artifact, x_test)
        diff = float(np.max(np.abs(probabilities - predict_proba(x_test))))
        if diff >= MAX_PROBABILITY_DIFF:
            raise TrainingError(
                f"the {variant} ONNX export disagrees with the trained model by {diff:.2e}"
            )
        artifacts[variant] = artifact
        metrics[variant] = _metrics(y_test, label, probabilities, len(artifact))
    how = f"family {spec.edge_family}"
    if spec.edge_variant != "family":
        how = f"{spec.edge_variant} int8 quantization of the cloud model"
        try:
            artifacts["edge"] = edge_variants.quantize(
                artifacts["cloud"], spec.edge_variant, INPUT_NAME, x_train
            )
        except edge_variants.EdgeVariantError as error:
            raise TrainingError(str(error)) from error
        label, probabilities = run_onnx(artifacts["edge"], x_test)
        metrics["edge"] = _metrics(y_test, label, probabilities, len(artifacts["edge"]))
        used["edge"] = {"quantization": spec.edge_variant}
    try:
        delta = edge_variants.check_budget(spec.edge_budget, metrics["edge"], metrics["cloud"], how)
    except edge_variants.EdgeVariantError as error:
        raise TrainingError(str(error)) from error
    latency = {
        v: edge_variants.latency_p50_ms(artifacts[v], INPUT_NAME, x_test[0]) for v in artifacts
    }
    report = {
        "how": how,
        "metric": spec.edge_budget.metric if spec.edge_budget else "accuracy",
        "max_drop": None if spec.edge_budget is None else spec.edge_budget.max_drop,
        "quality_delta": delta,
        "size_ratio": len(artifacts["edge"]) / len(artifacts["cloud"]),
        "latency_ratio": latency["edge"] / latency["cloud"],
        "edge_latency_p50_ms": latency["edge"],
        "cloud_latency_p50_ms": latency["cloud"],
    }
    metrics = {v: _reported(metrics[v], spec.metrics) for v in ("edge", "cloud")}
    _, served_confidence = run_onnx(artifacts["edge"], x_train)

    lineage: dict[str, Any] = {
        "query": spec.query,
        "table_versions": versions,
        "rows": {
            "total": len(y),
            "train": len(splits.train),
            "validation": len(splits.validation),
            "test": len(test_idx),
            "dropped_null": int(splits.dropped),
        },
        "split": splits.split,
        "validation_split": splits.validation_split,
        "validation_sha256": splits.validation_digest(),
        "classes": len(np.unique(y)),
        "hard_examples": hard_report,
        "families": {"edge": spec.edge_family, "cloud": spec.cloud_family},
        "edge_variant": {"kind": spec.edge_variant, "how": how},
        "params": used,
        "code_version": code_version(),
        "reference": reference(spec.features, x_train, served_confidence.max(axis=1)),
        "onnx": {
            "input": INPUT_NAME,
            "outputs": list(OUTPUT_NAMES),
            "n_features": int(x.shape[1]),
            "opset": dict(TARGET_OPSET),
        },
        "sklearn_version": sklearn.__version__,
        "spec": spec.model_dump(),
    }
    return TrainingResult(artifacts, metrics, lineage, report)
