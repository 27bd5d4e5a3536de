"""Hard examples as labelled training rows: the cascade's escalations close the loop.

Every escalation an edge keeps (``edge/routing/hard_examples.py``) reaches the lake's
``hard_examples`` stream with the request's input tensor and the cloud model's answer. Here each
row of such a request becomes a training row, labelled by the chosen source:
- ``cloud``: the cloud model's class for the row (its ``label`` output, else the arg max of its
  probabilities), which distils the big model into the edge model where the edge doubted;
- ``human``: a person's label, added later through the API or ``hybridai model label``, kept in
  the lake's ``hard_example_labels`` stream (the newest label of a row wins); unlabelled rows
  are left out;
- ``human-else-cloud``: a person's label where there is one, the cloud's elsewhere.
Labels live in the lake, not the metadata store, so a training run's lineage (the table versions
it read) reproduces the very labels it trained on. Rows whose inputs a data policy withheld or
pseudonymised cannot be read back and are counted as unreadable.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from hybridai.cloud.data.lake import Lake, LakeConflictError, LakeQueryError
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.registry import (
    MODEL_NAME_PATTERN,
    HardExampleLabel,
    HardExampleSummary,
    HardLabelSource,
)

STREAM = "hard_examples"
LABELS_STREAM = "hard_example_labels"
LABELLER = "people"  # the lake's writer id for labels people add (its batches are sequenced)
_COMMIT_TRIES = 5

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class HardRows:
    """Training rows made of hard examples, newest first, and what was left out and why."""

    x: Array
    y: Array
    requests: int
    counts: dict[str, int] = field(default_factory=dict)


def _tensor(tensors: list[dict[str, Any]], prefer: tuple[str, ...]) -> dict[str, Any] | None:
    by_name = {t.get("name"): t for t in tensors}
    for name in prefer:
        if name in by_name:
            return by_name[name]
    return tensors[-1] if tensors else None


def _array(tensor: dict[str, Any]) -> Array:
    return np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])


def decode(inputs: str | None, cloud_outputs: str | None) -> tuple[Array, Array] | None:
    """Input rows [n, features] and the cloud's class per row; None when not readable."""
    try:
        given = json.loads(inputs or "")
        answered = json.loads(cloud_outputs or "")
        x = _array(given[0])
        labelled = _tensor(answered, ("label",))
        if labelled is not None and labelled.get("name") == "label":
            y = np.asarray(labelled["data"], dtype=np.int64).reshape(-1)
        else:
            probabilities = _tensor(answered, ("probabilities",))
            assert probabilities is not None
            y = _array(probabilities).reshape(len(x), -1).argmax(axis=1)
    except (ValueError, TypeError, KeyError, IndexError, AssertionError):
        return None
    if x.ndim != 2 or len(y) != len(x) or not np.isfinite(x).all():
        return None
    return x.astype(np.float32), y


def _present(lake: Lake, stream: str, versions: dict[str, int] | None) -> bool:
    """Whether ``stream`` is there to read (at ``versions``: whether the run saw it)."""
    return stream in versions if versions is not None else stream in lake.streams()


def _checked(model: str) -> str:
    if not re.fullmatch(MODEL_NAME_PATTERN, model):
        raise ApiError(400, ErrorCode.INVALID_NAME, f"{model!r} is not a model name")
    return model


def _query(lake: Lake, sql: str, versions: dict[str, int] | None) -> pa.Table | None:
    if not _present(lake, STREAM, versions):
        return None
    try:
        return lake.query(sql, versions=versions)
    except LakeQueryError as error:
        raise ApiError(
            500, ErrorCode.INTERNAL, f"the hard examples could not be read: {error}"
        ) from None


def _records(lake: Lake, model: str, versions: dict[str, int] | None) -> list[dict[str, Any]]:
    model = _checked(model)
    columns = set(lake.columns(STREAM)) if _present(lake, STREAM, versions) else set()
    if not {"inputs", "cloud_outputs"} <= columns:  # every record had its tensors withheld
        wanted = "request_id, ts, NULL AS inputs, NULL AS cloud_outputs"
    else:
        wanted = "request_id, ts, inputs, cloud_outputs"
    sql = (
        f"SELECT {wanted} FROM {STREAM} WHERE model = '{model}' "  # model: a checked name
        "ORDER BY ts DESC, request_id"
    )
    table = _query(lake, sql, versions)
    return [] if table is None else table.to_pylist()


def human_labels(
    lake: Lake, model: str, versions: dict[str, int] | None = None
) -> dict[tuple[str, int], int]:
    """The newest person's label of each (request id, row) of ``model``."""
    model = _checked(model)
    if not _present(lake, LABELS_STREAM, versions):
        return {}
    sql = f"SELECT request_id, row, label FROM {LABELS_STREAM} WHERE model = '{model}' ORDER BY ts"
    try:
        table = lake.query(sql, versions=versions)
    except LakeQueryError as error:
        raise ApiError(500, ErrorCode.INTERNAL, f"the labels could not be read: {error}") from None
    return {(r["request_id"], int(r["row"])): int(r["label"]) for r in table.to_pylist()}


def rows(
    lake: Lake,
    model: str,
    n_features: int,
    source: HardLabelSource,
    versions: dict[str, int] | None = None,
    max_rows: int = 100_000,
) -> HardRows:
    """The hard examples of ``model`` as training rows labelled by ``source``."""
    people = human_labels(lake, model, versions) if source != "cloud" else {}
    xs: list[Array] = []
    ys: list[int] = []
    counts = {"unreadable": 0, "wrong_width": 0, "unlabelled": 0, "by_cloud": 0, "by_human": 0}
    requests = 0
    for record in _records(lake, model, versions):
        decoded = decode(record.get("inputs"), record.get("cloud_outputs"))
        if decoded is None:
            counts["unreadable"] += 1
            continue
        x, cloud = decoded
        if x.shape[1] != n_features:
            counts["wrong_width"] += 1
            continue
        requests += 1
        for i in range(len(x)):
            person = people.get((record["request_id"], i))
            if person is not None:
                label, by = person, "by_human"
            elif source == "human":
                counts["unlabelled"] += 1
                continue
            else:
                label, by = int(cloud[i]), "by_cloud"
            xs.append(x[i])
            ys.append(label)
            counts[by] += 1
            if len(ys) >= max_rows:
                break
        if len(ys) >= max_rows:
            break
    x_all = np.vstack(xs).astype(np.float32) if xs else np.zeros((0, n_features), np.float32)
    return HardRows(x_all, np.asarray(ys, dtype=np.int64), requests, counts)


def summary(lake: Lake, model: str) -> HardExampleSummary:
    """How many hard examples ``model`` has in the lake, and who labelled their rows."""
    people = human_labels(lake, model)
    records = _records(lake, model, None)
    n_rows = unreadable = human = 0
    for record in records:
        decoded = decode(record.get("inputs"), record.get("cloud_outputs"))
        if decoded is None:
            unreadable += 1
            continue
        n_rows += len(decoded[0])
        human += sum((record["request_id"], i) in people for i in range(len(decoded[0])))
    return HardExampleSummary(
        model=model,
        requests=len(records),
        rows=n_rows,
        cloud_labelled=n_rows,
        human_labelled=human,
        unreadable=unreadable,
    )


def add_labels(lake: Lake, model: str, labels: list[HardExampleLabel], who: str, now: float) -> int:
    """Store people's labels for rows of ``model``'s hard examples; returns the table version.

    Each label must name a row of a hard example the lake holds (404 otherwise), so a typo
    cannot silently label nothing.
    """
    known: dict[str, int] = {}
    for record in _records(lake, model, None):
        decoded = decode(record.get("inputs"), record.get("cloud_outputs"))
        if decoded is not None:
            known.setdefault(record["request_id"], len(decoded[0]))
    for item in labels:
        if item.request_id not in known:
            raise ApiError(
                404,
                ErrorCode.NOT_FOUND,
                f"model {model!r} has no readable hard example with request id "
                f"{item.request_id!r}: list them with `hybridai model hard-examples {model}`",
            )
        if item.row >= known[item.request_id]:
            raise ApiError(
                400,
                ErrorCode.INVALID_INPUT,
                f"request {item.request_id!r} has {known[item.request_id]} row(s); row "
                f"{item.row} does not exist (rows count from 0)",
            )
    date = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")
    table = pa.Table.from_pylist(
        [
            {
                "record_id": f"{LABELLER}:{now:.6f}:{i}",
                "device_id": LABELLER,
                "site": "cloud",
                "ts": now,
                "date": date,
                "model": model,
                "request_id": item.request_id,
                "row": item.row,
                "label": item.label,
                "labelled_by": who,
            }
            for i, item in enumerate(labels)
        ]
    )
    for _ in range(_COMMIT_TRIES):  # writers race for the next sequence number: take a new one
        seq = (lake.committed_seq(LABELS_STREAM, LABELLER) or 0) + 1
        try:
            version, duplicate = lake.commit_batch(LABELS_STREAM, LABELLER, seq, table)
        except LakeConflictError:
            continue
        if not duplicate:
            return version
    raise ApiError(
        409, ErrorCode.CONFLICT, "other labels were being stored at the same time: send again"
    )
