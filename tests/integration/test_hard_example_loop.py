"""Hard examples close the loop: escalations, labelled by the cloud or a person, retrain the edge.

An edge model trained on few rows escalates its least confident 30% of field traffic; each
escalation is recorded exactly as the edge agent records it (``edge.routing.hard_example``)
and committed to the lake as an edge batch. Retraining with those rows labelled by the cloud
model must make the edge model better where it doubted, on ground-truth rows it never saw.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

from _multiclass import three_class_query, three_class_spec
from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines import hard_examples
from hybridai.cloud.pipelines.training import TrainingResult, train
from hybridai.edge.routing.hard_examples import hard_example
from hybridai.orchestrator import CascadeRule, Measure
from hybridai.protocol.errors import ApiError
from hybridai.protocol.registry import HardExampleLabel, HardExamplesSpec, TrainingSpec
from hybridai.protocol.tensors import encode
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse, RequestInput

RULE = CascadeRule(Measure.MARGIN)
ROWS_PER_REQUEST = 1


def base_spec(**update: Any) -> TrainingSpec:
    return three_class_spec(
        "tri",
        query=three_class_query(rows=800),
        edge_family="mlp",
        params={"edge": {"hidden_layer_sizes": [16], "max_iter": 3000}},
        **update,
    )


def rows(n: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    got = duckdb.sql(three_class_query(rows=n, seed=seed)).fetchnumpy()
    return np.column_stack([got["x"], got["z"]]).astype(np.float32), got["y"].astype(np.int64)


def run(artifact: bytes, x: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    label, probabilities = session.run(None, {"input": x})
    return label, probabilities


def escalate_field_traffic(lake: Lake, v1: TrainingResult, n: int) -> float:
    """Play an edge on ``n`` field rows: escalate its least confident 30% (requests of 4 rows)
    to the cloud variant and commit each as a hard example; return the threshold."""
    x, _ = rows(n, seed=10_000)
    _, edge_p = run(v1.artifacts["edge"], x)
    confidence = RULE.confidences(edge_p).reshape(-1, ROWS_PER_REQUEST).min(axis=1)
    threshold = float(np.quantile(confidence, 0.3))
    records = []
    for r in np.flatnonzero(confidence < threshold):
        chunk = x[r * ROWS_PER_REQUEST : (r + 1) * ROWS_PER_REQUEST]
        request = InferenceRequest(
            id=f"req-{r}",
            inputs=[
                RequestInput(
                    name="input",
                    shape=list(chunk.shape),
                    datatype="FP32",
                    data=chunk.reshape(-1).tolist(),
                )
            ],
        )
        answers = {}
        for variant in ("edge", "cloud"):
            label, probabilities = run(v1.artifacts[variant], chunk)
            answers[variant] = InferenceResponse(
                model_name="tri",
                model_version="1",
                outputs=[encode("label", label), encode("probabilities", probabilities)],
            )
        record = hard_example(
            "gw-1",
            "tri",
            request,
            answers["edge"],
            answers["cloud"],
            float(confidence[r]),
            RULE,
            "edge",
        )
        day = dt.datetime.fromtimestamp(record["ts"], dt.UTC).strftime("%Y-%m-%d")
        records.append(
            {**record, "record_id": f"gw-1:{r}", "device_id": "gw-1", "site": "a", "date": day}
        )
    lake.commit_batch(hard_examples.STREAM, "gw-1", 1, pa.Table.from_pylist(records))
    return threshold


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    v1 = train(lake, base_spec())
    escalate_field_traffic(lake, v1, 6000)
    v2 = train(lake, base_spec(hard_examples=HardExamplesSpec(label_source="cloud")))
    return {"lake": lake, "v1": v1, "v2": v2}


def test_retraining_on_cloud_labelled_hard_examples_improves_the_hard_region(
    loop: dict[str, Any],
) -> None:
    v1, v2 = loop["v1"], loop["v2"]
    x, y = rows(4000, seed=20_000)  # ground truth, never escalated nor trained on
    _, p1 = run(v1.artifacts["edge"], x)
    hard = RULE.confidences(p1) < np.quantile(RULE.confidences(p1), 0.3)  # where v1 doubted
    before = float((run(v1.artifacts["edge"], x[hard])[0] == y[hard]).mean())
    after = float((run(v2.artifacts["edge"], x[hard])[0] == y[hard]).mean())
    overall = [float((run(v.artifacts["edge"], x)[0] == y).mean()) for v in (v1, v2)]
    print(f"edge accuracy on v1's hard region: {before:.3f} -> {after:.3f}; overall {overall}")

    assert after >= before + 0.03
    assert overall[1] >= overall[0] - 0.01  # not bought with the easy region
    report = v2.lineage["hard_examples"]
    assert report["label_source"] == "cloud" and report["rows"] > 1000
    assert report["labelled"] == {"by_cloud": report["rows"], "by_human": 0}
    assert v2.lineage["rows"]["test"] == v1.lineage["rows"]["test"]  # judged on the same rows
    assert v2.metrics["edge"]["n_test"] == v1.metrics["edge"]["n_test"]


def test_human_labels_replace_the_clouds_and_a_wrong_row_is_refused(
    loop: dict[str, Any],
) -> None:
    lake: Lake = loop["lake"]
    summary = hard_examples.summary(lake, "tri")
    assert summary.rows == summary.requests * ROWS_PER_REQUEST and summary.unreadable == 0
    ids = [
        r["request_id"]
        for r in lake.query(
            "SELECT request_id FROM hard_examples ORDER BY request_id LIMIT 5"
        ).to_pylist()
    ]
    labels = [
        HardExampleLabel(request_id=i, label=label)
        for i, label in zip(ids, [2, 2, 2, 2, 1], strict=True)
    ]
    hard_examples.add_labels(lake, "tri", labels[:4], "alice", 1_700_000_000.0)
    hard_examples.add_labels(lake, "tri", labels[4:], "bob", 1_700_000_001.0)

    only_people = hard_examples.rows(lake, "tri", 2, "human")
    assert only_people.y.tolist() == [2, 2, 2, 2, 1] or sorted(only_people.y.tolist()) == [
        1,
        2,
        2,
        2,
        2,
    ]
    assert only_people.counts["by_human"] == 5 and only_people.counts["by_cloud"] == 0
    mixed = hard_examples.rows(lake, "tri", 2, "human-else-cloud")
    assert mixed.counts["by_human"] == 5 and mixed.counts["by_cloud"] == summary.rows - 5
    assert hard_examples.summary(lake, "tri").human_labelled == 5

    with pytest.raises(ApiError, match="no readable hard example"):
        hard_examples.add_labels(
            lake, "tri", [HardExampleLabel(request_id="nope", label=0)], "a", 0.0
        )
    with pytest.raises(ApiError, match=r"has 1 row.*row 9 does not exist"):
        hard_examples.add_labels(
            lake, "tri", [HardExampleLabel(request_id=ids[0], row=9, label=0)], "a", 0.0
        )
