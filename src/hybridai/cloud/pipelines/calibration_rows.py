"""Where a calibration's rows come from, and the guard that keeps a model's own rows out.

A version trained by hybridai brings its validation split: its rows are read again at the
table versions lineage recorded and split as training split them (a digest proves it). Any
version, uploaded ones included, can instead be calibrated on labelled rows given with the
request, from a lake query or a Parquet file. Those rows are checked by content hash
(``lineage.row_hashes``) against what the version must never be calibrated on:
- trained here: its training and test splits, read again from lineage;
- uploaded: the test rows recorded with the upload (``hybridai model upload --test-data``).
  Nothing else is known of an uploaded model's data, so without them the guard can check
  nothing, and the report says so.
A trained version is then reported on its own test split; an uploaded one on a quarter of the
given rows held out from the fit (stratified, seed 0), so the report still shows how the
threshold carries over to rows it was not fitted on.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

from hybridai.cloud.data.lake import Lake, LakeQueryError
from hybridai.cloud.pipelines import training
from hybridai.cloud.pipelines.lineage import pack_hashes, row_hashes, unpack_hashes
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import CalibrationRequest
from hybridai.protocol.registry import TrainingSpec
from hybridai.serving.providers import create_session
from hybridai.storage.tables import ModelVersionRow

Array = np.ndarray[Any, Any]
MIN_ROWS = 20
HELD_OUT_SHARE = 0.25


def _invalid(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_INPUT, message)


@dataclass(frozen=True)
class CalibrationRows:
    """Rows to fit on (validation) and to report on (held out), with where they came from."""

    x_validation: Array
    y_validation: Array
    x_test: Array
    y_test: Array
    rows: str
    guard: str


def read_parquet(data: bytes, what: str) -> pa.Table:
    """A Parquet file's table; anything else is a 400 that says what was expected."""
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _invalid(f"{what} is not a readable Parquet file ({type(error).__name__})") from None


def labelled(
    table: pa.Table, features: list[str], label: str | None, regression: bool = False
) -> tuple[Array, Array]:
    """Features (float32) and class numbers (or targets) of ``table``; nulls are dropped."""
    needed = [*features, label] if label is not None else list(features)
    missing = [c for c in dict.fromkeys(needed) if c not in table.column_names]
    if missing:
        raise _invalid(
            f"the rows have no column(s) {', '.join(missing)}; they have "
            f"{', '.join(table.column_names) or 'none'}"
        )
    if label is not None and label in features:
        raise _invalid(f"{label!r} is the label: it cannot be a feature too")
    kept = table.select(needed).drop_null()
    try:
        x = np.column_stack(
            [kept.column(f).to_numpy().astype(np.float32) for f in features]
        ).reshape(kept.num_rows, len(features))
    except (TypeError, ValueError, pa.ArrowException):
        raise _invalid(f"features must be numeric columns ({', '.join(features)})") from None
    if label is None:
        return x, np.zeros(len(x), dtype=np.int64)
    try:
        if regression:
            y = training.targets(kept.column(label), label)
        else:
            y = training.class_labels(kept.column(label), label)
    except training.TrainingError as error:
        raise _invalid(str(error)) from None
    return x, y


def features_of(
    table: pa.Table, request: CalibrationRequest, spec: TrainingSpec | None
) -> list[str]:
    if spec is not None:
        if request.features is not None and request.features != spec.features:
            raise _invalid(
                f"this version was trained on features {', '.join(spec.features)}, in that "
                "order: give those (or leave features out)"
            )
        return list(spec.features)
    if request.features is not None:
        return list(request.features)
    return [c for c in table.column_names if c != request.label]


def answers(artifact: bytes, x: Array, variant: str) -> tuple[Array, Array]:
    """Class numbers and probabilities [n, k] of any classifier exported to ONNX.

    Probabilities come from the output named ``probabilities``, else the last output (what
    the edge's cascade reads); class numbers from ``label`` when present, else the arg max.
    """
    threads = os.cpu_count() or 1
    session = create_session(artifact, label=f"calibration ({variant})", threads=threads).session
    inputs = session.get_inputs()
    outputs = [o.name for o in session.get_outputs()]
    if len(inputs) != 1:
        raise _invalid(
            f"the {variant} variant takes {len(inputs)} inputs; calibration feeds one "
            "[rows, features] tensor"
        )
    chosen = "probabilities" if "probabilities" in outputs else outputs[-1]
    if chosen == "members":
        raise _invalid(
            f"the {variant} variant is a regression ensemble (it answers members, not class "
            "probabilities): calibrate it with measure spread"
        )
    try:
        results = session.run(None, {inputs[0].name: x})
    except Exception as error:  # ONNX Runtime raises its own, unexported exception classes
        first = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise _invalid(
            f"the {variant} variant cannot run on {x.shape[1]} feature column(s): {first}"
        ) from None
    probabilities = np.asarray(results[outputs.index(chosen)])
    if probabilities.dtype == object or probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise _invalid(
            f"the {variant} variant's output {chosen!r} is not class probabilities [rows, "
            "classes]: export it with one (for skl2onnx: options={'zipmap': False})"
        )
    if "label" in outputs:
        labels = np.asarray(results[outputs.index("label")]).reshape(-1)
    else:
        labels = probabilities.argmax(axis=1)
    return labels, probabilities.astype(np.float64)


def members(artifact: bytes, x: Array, variant: str) -> tuple[Array, Array]:
    """A regression ensemble's answer [n] and its members' answers [n, m] (``regression``)."""
    threads = os.cpu_count() or 1
    session = create_session(artifact, label=f"calibration ({variant})", threads=threads).session
    names = [o.name for o in session.get_outputs()]
    if "members" not in names or len(session.get_inputs()) != 1:
        raise _invalid(
            f"the {variant} variant answers {', '.join(names)}: the spread measure needs a "
            "regression ensemble with one input and outputs prediction and members "
            "(train with task: regression)"
        )
    try:
        got = session.run(None, {session.get_inputs()[0].name: x})
    except Exception as error:  # ONNX Runtime raises its own, unexported exception classes
        first = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise _invalid(f"the {variant} variant cannot run on these rows: {first}") from None
    spread = np.asarray(got[names.index("members")], dtype=np.float64)
    if "prediction" in names:
        prediction = np.asarray(got[names.index("prediction")], dtype=np.float64).reshape(-1)
    else:
        prediction = spread.mean(axis=1)
    return prediction, spread


def _recorded(lake: Lake, spec: TrainingSpec, lineage: dict[str, Any], where: str) -> Any:
    table = training.query_rows(lake, spec, dict(lineage["table_versions"]))
    splits = training.split_rows(table, spec)
    if splits.validation_digest() != lineage.get("validation_sha256"):
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"the rows {where} was trained on read back differently (the lake's history was "
            "vacuumed or rewritten): train a new version",
        )
    return splits


def _given(lake: Lake, request: CalibrationRequest, data: pa.Table | None) -> tuple[pa.Table, str]:
    if data is not None and request.query is not None:
        raise _invalid("give the rows as a file or as a query, not both")
    if request.label is None:
        raise _invalid("name the label column of the given rows (label)")
    if data is not None:
        return data, f"uploaded file ({data.num_rows} rows)"
    assert request.query is not None
    try:
        return lake.query(request.query), "lake query"
    except LakeQueryError as error:
        raise _invalid(f"the calibration query failed: {error}") from None


def _hold_out(y: Array) -> tuple[Array, Array]:
    """Fit and held-out indices of the given rows: stratified when every class allows it."""
    n = np.zeros(len(y))
    try:
        splitter: Any = StratifiedShuffleSplit(1, test_size=HELD_OUT_SHARE, random_state=0)
        fit, held = next(splitter.split(n, y))
    except ValueError:  # a class with a single row: split without stratifying
        fit, held = next(ShuffleSplit(1, test_size=HELD_OUT_SHARE, random_state=0).split(n))
    return fit, held


def rows_for(
    lake: Lake,
    row: ModelVersionRow,
    request: CalibrationRequest,
    data: pa.Table | None,
    regression: bool = False,
) -> CalibrationRows:
    """The rows to calibrate ``row`` on, checked by the guard; 4xx when they cannot be used."""
    lineage = row.lineage or {}
    where = f"{row.name} v{row.version}"
    trained = "spec" in lineage and "table_versions" in lineage
    spec = TrainingSpec.model_validate(lineage["spec"]) if trained else None
    if data is None and request.query is None:
        if spec is None:
            raise _invalid(
                f"{where} was not trained by hybridai, so it has no validation split of its own "
                "(no lineage to re-read its rows): give labelled rows instead, "
                "`--data FILE --label COL` or `--query SQL --label COL`"
            )
        if not lineage.get("validation_sha256") or not lineage.get("rows", {}).get("validation"):
            raise _invalid(
                f"{where} was trained without a validation split: train it again "
                "(validation_share > 0), or give labelled rows (--data / --query)"
            )
        s = _recorded(lake, spec, lineage, where)
        return CalibrationRows(
            s.x[s.validation],
            s.y[s.validation],
            s.x[s.test],
            s.y[s.test],
            "validation split",
            "the validation split training recorded (sha256 checked), apart from the test split",
        )

    table, source = _given(lake, request, data)
    x, y = labelled(table, features_of(table, request, spec), request.label, regression)
    if len(y) < MIN_ROWS:
        raise _invalid(f"the given rows hold {len(y)} usable rows; at least {MIN_ROWS} are needed")
    given = row_hashes(x)
    if spec is not None:
        s = _recorded(lake, spec, lineage, where)
        seen = row_hashes(s.x[s.train]) | row_hashes(s.x[s.test])
        guard = f"no row is one of the {len(s.train)} training or {len(s.test)} test rows"
    else:
        recorded = (lineage.get("test_rows") or {}).get("hashes")
        seen = unpack_hashes(recorded) if recorded else set()
        guard = (
            f"no row is one of the {len(seen)} test rows recorded with the upload"
            if recorded
            else "none possible: the upload recorded no test rows (upload with --test-data)"
        )
    leaked = len(given & seen)
    if leaked:
        raise ApiError(
            400,
            ErrorCode.TEST_ROWS_LEAK,
            f"{leaked} of the given rows' feature values match rows {where} was trained or "
            "tested on: calibrate on rows the model never saw (a threshold fitted there "
            "would look better than it is)",
        )
    if spec is not None:
        return CalibrationRows(x, y, s.x[s.test], s.y[s.test], source, guard)
    fit, held = _hold_out(np.zeros(len(y)) if regression else y)
    source += f", {len(held)} of its rows kept apart as the test split"
    return CalibrationRows(x[fit], y[fit], x[held], y[held], source, guard)


def recorded_test_rows(
    table: pa.Table, label: str | None, features: list[str] | None
) -> dict[str, Any]:
    """What an upload records of its test rows: their count, features and content hashes.

    ``features`` default to every column but ``label``; the values are not kept, only hashes.
    """
    if label is None and features is None:
        raise _invalid("name the test data's label column (label) or its feature columns")
    names = features or [c for c in table.column_names if c != label]
    x, _ = labelled(table, names, None)
    if not len(x):
        raise _invalid("the test data holds no usable rows (every row has a null)")
    return {"count": len(x), "features": names, "hashes": pack_hashes(row_hashes(x))}
