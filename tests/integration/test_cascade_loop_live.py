"""A three-class model through the whole platform, with real processes.

The cloud trains it (edge: a small MLP, cloud: boosted trees), `model calibrate` fits its
cascade at a 30% cloud share, a real edge agent runs the cascade and reproduces the calibrated
decision row for row, its escalations reach the lake as hard examples, a person labels one,
and one retraining round on the cloud-labelled hard examples makes the edge model better where
it doubted, on ground-truth rows it never saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from _fleet import local_fleet
from _multiclass import FEATURES, three_class_query
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.orchestrator import CascadeRule, Measure

pytestmark = pytest.mark.slow
MODEL = "tri"
FIELD_ROWS = 1000  # single-row requests; about 30% escalate
EDGE_ENV = {"HYBRIDAI_EDGE_SYNC_INTERVAL_S": "1", "HYBRIDAI_EDGE_CLOUD_TIMEOUT_S": "15"}


def spec(**update: Any) -> dict[str, Any]:
    return {
        "model_name": MODEL,
        "query": three_class_query(rows=800),
        "features": FEATURES,
        "label": "y",
        "edge_family": "mlp",
        "cloud_family": "gbm",
        "params": {"edge": {"hidden_layer_sizes": [16], "max_iter": 3000}},
        **update,
    }


def rows(n: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    got = duckdb.sql(three_class_query(rows=n, seed=seed)).fetchnumpy()
    return np.column_stack([got["x"], got["z"]]).astype(np.float32), got["y"].astype(np.int64)


def edge_model(fleet: LocalFleet, version: str) -> ort.InferenceSession:
    path = f"/api/v1/models/{MODEL}/versions/{version}/artifacts/edge"
    data = fleet.api.get(path).content  # type: ignore[union-attr]
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def ask(http: httpx.Client, url: str, row: np.ndarray[Any, Any], i: int) -> dict[str, Any]:
    body = {
        "id": f"field-{i}",
        "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": row.tolist()}],
    }
    response = http.post(f"{url}/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    parameters: dict[str, Any] = response.json()["parameters"]
    return parameters


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    workspace: Path = tmp_path_factory.mktemp("cascade-loop")
    with local_fleet(workspace) as fleet:
        fleet.start_edge("server-1", "plant-a", "edge-server", env=EDGE_ENV)
        fleet.wait_enrolled(1)
        yield fleet


@pytest.mark.timeout(600)
def test_train_calibrate_cascade_at_the_edge_and_retrain_on_hard_examples(
    fleet: LocalFleet,
) -> None:
    v1 = fleet.train(spec())
    assert v1["metrics"]["edge"]["classes"] == 3.0
    calibrated = fleet.call(
        "POST",
        f"/api/v1/models/{MODEL}/versions/{v1['version']}/calibration",
        json={"target_cloud_share": 0.3, "measure": "margin"},
    )
    assert abs(calibrated["validation"]["cloud_share"] - 0.3) < 0.02
    policy = {"kind": "cascade"}  # the threshold and measure calibration stored
    fleet.call(
        "PUT",
        f"/api/v1/deployments/{MODEL}",
        json={"name": MODEL, "version": v1["version"], "policy": policy},
    )
    wait_for("the edge to serve v1", lambda: fleet.serving(MODEL, v1["version"]), 60)

    x, _ = rows(FIELD_ROWS, seed=10_000)
    url = fleet.edges["server-1"].url
    with ThreadPoolExecutor(2) as pool, httpx.Client(timeout=30) as http:
        answers = list(pool.map(lambda i: ask(http, url, x[i], i), range(FIELD_ROWS)))
    tried = np.asarray([bool(a.get("escalated") or a.get("escalation_failed")) for a in answers])
    escalated = np.asarray([bool(a.get("escalated")) for a in answers])
    # A request the router sent straight to the cloud (its estimates said the edge was busy)
    # skips the cascade: the rule is checked on those the edge answered first.
    # The first answers, before the edge has a cloud estimate, are its own (no_cloud_estimate_yet).
    at_edge = np.asarray(
        [
            a.get("answered_first_by", a["placement"]) != "cloud"
            and a.get("reason") != "no_cloud_estimate_yet"
            for a in answers
        ]
    )
    threshold = calibrated["threshold"]
    _, p1 = edge_model(fleet, v1["version"]).run(None, {"input": x})
    confidence = CascadeRule(Measure.MARGIN).confidences(p1)
    predicted = confidence < threshold
    agree = float((tried == predicted)[at_edge].mean())
    for i in np.flatnonzero((tried != predicted) & at_edge)[:10]:
        print(f"row {i}: {answers[i]}, local confidence {confidence[i]:.6f} vs {threshold:.6f}")
    print(
        f"live: {at_edge.mean():.3f} answered first at the edge, escalated "
        f"{escalated[at_edge].mean():.3f} of those (calibrated {calibrated['validation']}), "
        f"agreement with calibration's rule {agree:.4f}"
    )
    assert at_edge.mean() > 0.8
    assert agree > 0.999  # the edge applies calibration's rule, row for row
    # The validation split is small (800 rows in all), so the share on field traffic varies
    # more than the benchmark's 2 points; the edge's share is calibration's, row for row.
    assert abs(tried[at_edge].mean() - 0.3) < 0.1

    sql = f"SELECT count(*) FROM hard_examples WHERE model = '{MODEL}'"
    wait_for(
        "the hard examples to reach the lake", lambda: fleet.lake_count(sql) >= escalated.sum(), 120
    )
    summary = fleet.call("GET", f"/api/v1/models/{MODEL}/hard-examples")
    assert summary["requests"] == summary["rows"] == escalated.sum()
    first = f"field-{int(np.flatnonzero(escalated)[0])}"
    labels = {"labels": [{"request_id": first, "row": 0, "label": 1}]}
    assert (
        fleet.call("POST", f"/api/v1/models/{MODEL}/hard-examples/labels", json=labels)["stored"]
        == 1
    )
    refused = fleet.api.post(  # type: ignore[union-attr]
        f"/api/v1/models/{MODEL}/hard-examples/labels",
        json={"labels": [{"request_id": "field-none", "row": 0, "label": 1}]},
    )
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"

    v2 = fleet.train(spec(hard_examples={"label_source": "cloud"}))
    used = fleet.call("GET", f"/api/v1/models/{MODEL}/versions/{v2['version']}")["lineage"]
    assert used["hard_examples"]["requests"] == escalated.sum()
    assert used["hard_examples"]["labelled"]["by_cloud"] == used["hard_examples"]["rows"] > 0
    assert v2["metrics"]["edge"]["n_test"] == v1["metrics"]["edge"]["n_test"]
    truth_x, truth_y = rows(4000, seed=20_000)  # never seen, never escalated
    confidence = CascadeRule(Measure.MARGIN).confidences(
        edge_model(fleet, v1["version"]).run(None, {"input": truth_x})[1]
    )
    hard = confidence < threshold
    accuracy = {}
    for name, run in (("v1", v1), ("v2", v2)):
        label = edge_model(fleet, run["version"]).run(None, {"input": truth_x})[0]
        accuracy[name] = (
            float((label[hard] == truth_y[hard]).mean()),
            float((label == truth_y).mean()),
        )
    print(f"edge accuracy (hard region, overall): {accuracy}")
    assert v2["metrics"]["edge"]["n_test"] == v1["metrics"]["edge"]["n_test"]
    # Measured here: 0.780 -> 0.815 where v1 doubted, 0.866 -> 0.880 overall, from 382
    # escalations; escalations that fail under load are not kept, so only a gain is required.
    assert accuracy["v2"][0] > accuracy["v1"][0]
    assert accuracy["v2"][1] >= accuracy["v1"][1] - 0.01
