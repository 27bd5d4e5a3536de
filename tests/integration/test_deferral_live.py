"""A learned deferral router with real processes: fitted by the cloud, applied by an edge agent.

Labelled rows (noisy circles) reach the lake through an edge's ingest and sync; the cloud fits
the router of an uploaded version on them (``POST .../deferral`` with a lake query), signs it
and ships it with the edge variant; the edge agent verifies it under the key it pinned and
escalates exactly the rows its router predicts the edge gets wrong.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_circles
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _fleet import ingest, local_fleet
from hybridai.cloud.pipelines import deferral
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.orchestrator.deferral import router_features

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path_factory.mktemp("deferral")) as fleet:
        fleet.start_edge("server-1", "plant-a", "edge-server")
        fleet.wait_enrolled(1)
        yield fleet


def _ready(fleet: LocalFleet, model: str, version: str) -> bool:
    models = {m["name"]: m for m in fleet.edge_status("server-1")["models"]}
    return (
        model in models
        and models[model]["state"] == "ready"
        and models[model]["version"] == version
    )


def test_an_edge_agent_applies_the_router_the_cloud_fitted_and_signed(fleet: LocalFleet) -> None:
    x, y = make_circles(3000, noise=0.15, factor=0.6, random_state=0)
    x = x.astype(np.float32)
    edge = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:1000], y[:1000])
    cloud = HistGradientBoostingClassifier(random_state=0).fit(x[:1000], y[:1000])
    files = {
        "edge": ("edge.onnx", deferral.export(edge, 2), "application/octet-stream"),
        "cloud": ("cloud.onnx", deferral.export(cloud, 2), "application/octet-stream"),
    }
    version = str(fleet.call("POST", "/api/v1/models/circ/versions", files=files)["version"])
    url = fleet.edges["server-1"].url
    now = time.time()
    records = [
        {"ts": now + i * 1e-3, "x0": float(a), "x1": float(b), "y": int(c)}
        for i, (a, b, c) in enumerate(
            zip(x[1000:2600, 0], x[1000:2600, 1], y[1000:2600], strict=True)
        )
    ]
    for start in range(0, len(records), 400):
        assert ingest(url, "circles", records[start : start + 400]).status_code == 200

    def in_lake() -> bool:
        try:
            return fleet.lake_count("SELECT count(*) FROM circles") >= len(records)
        except Exception:
            return False

    wait_for("the labelled rows to reach the lake", in_lake, 120, 0.5)
    request = {
        "target_cloud_share": 0.3,
        "method": "router",
        "query": "SELECT x0, x1, y FROM circles",
        "label": "y",
    }
    report = fleet.call("POST", f"/api/v1/models/circ/versions/{version}/deferral", json=request)
    assert report["method"] == "router" and report["router_family"]
    figures = report["test"]["methods"]
    assert figures["router"]["apgr"] > figures["threshold"]["apgr"]  # held-out rows
    policy = {"kind": "cascade", "cascade": {"measure": "margin", "threshold": 0.0}}
    fleet.call(
        "PUT",
        "/api/v1/deployments/circ",
        json={"name": "circ", "version": version, "policy": policy},
    )
    wait_for("server-1 to load circ", lambda: _ready(fleet, "circ", version), 90)

    rows = x[2600:2660]
    answers: list[dict[str, Any]] = []
    for row in rows:
        body = {
            "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": row.tolist()}]
        }
        response = httpx.post(f"{url}/v2/models/circ/infer", json=body, timeout=30)
        assert response.status_code == 200, response.text
        answers.append(response.json()["parameters"])
    stored = fleet.call("GET", f"/api/v1/models/circ/versions/{version}")["metrics"]["deferral"]
    router = stored["spec"]["router"]
    right = deferral.run(
        base64.b64decode(router["onnx"]), router_features(rows, edge.predict_proba(rows))
    )
    predicted = (right < router["threshold"]).tolist()
    assert [a["deferral"] for a in answers] == ["router"] * len(rows), answers[0]
    assert [a["escalated"] for a in answers] == predicted
    assert 0 < sum(predicted) < len(rows)
    assert all(
        a["placement"] == ("cloud" if p else "edge")
        for a, p in zip(answers, predicted, strict=True)
    )
