"""Placement with real processes: a slowed cloud link, a site peer, cascade hard examples.

One cloud, an edge server and a thin gateway of the same site, as separate processes behind
their own links (``demo.netlink``), so the slow link is real TCP delay, not a flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _fleet import local_fleet
from _models import slow_classifier_onnx, train_classifier_onnx
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow
ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.7, 0.0]]
FAST_EDGES = {"HYBRIDAI_EDGE_PROBE_INTERVAL_S": "0.3"}


def body(**parameters: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}],
        "parameters": parameters,
    }


def infer(url: str, model: str, **parameters: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/v2/models/{model}/infer", json=body(**parameters), timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["parameters"]
    return result


def register(fleet: LocalFleet, name: str, edge: bytes, cloud: bytes) -> str:
    files = {
        "edge": ("edge.onnx", edge, "application/octet-stream"),
        "cloud": ("cloud.onnx", cloud, "application/octet-stream"),
    }
    return str(fleet.call("POST", f"/api/v1/models/{name}/versions", files=files)["version"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    workspace: Path = tmp_path_factory.mktemp("placement")
    with local_fleet(workspace) as fleet:
        fleet.start_edge("server-1", "plant-a", "edge-server", env=FAST_EDGES)
        gateway_env = {**FAST_EDGES, "HYBRIDAI_EDGE_MEMORY_MB": "256"}
        fleet.start_edge("gw-1", "plant-a", "sensor-gateway", env=gateway_env)
        fleet.wait_enrolled(2)
        # The edge variant is too slow for its node; the cloud's is quick: on a healthy link the
        # cloud is the faster place. It needs more memory than the gateway has.
        version = register(fleet, "heavy", slow_classifier_onnx(), train_classifier_onnx())
        policy = {"kind": "latency", "needs": {"min_memory_mb": 1024}}
        fleet.call(
            "PUT",
            "/api/v1/deployments/heavy",
            json={"name": "heavy", "version": version, "policy": policy},
        )
        wait_for("server-1 to load heavy", lambda: _ready(fleet, "server-1", "heavy"), 60)
        yield fleet


def _ready(fleet: LocalFleet, device: str, model: str) -> bool:
    models = {m["name"]: m for m in fleet.edge_status(device)["models"]}
    return model in models and models[model]["state"] == "ready"


def _placed_at(fleet: LocalFleet, device: str, where: str, timeout_s: float) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def check() -> bool:
        seen.append(infer(fleet.edges[device].url, "heavy"))
        return seen[-1]["placement"] == where

    wait_for(f"{device} to place heavy at {where} (last: {seen[-1:]})", check, timeout_s, 0.05)
    return seen[-1]


def test_latency_policy_follows_the_cloud_link(fleet: LocalFleet) -> None:
    url = fleet.edges["server-1"].url
    healthy = _placed_at(fleet, "server-1", "cloud", 30)
    assert healthy["reason"] in {"fastest_estimate_no_budget"}
    assert healthy["estimates_ms"]["cloud"] < healthy["estimates_ms"]["server-1"]

    fleet.links["server-1"].delay_s = 0.1  # ~0.2 s more per round trip
    try:
        slowed = _placed_at(fleet, "server-1", "edge", 30)
        assert slowed["estimates_ms"]["cloud"] > slowed["estimates_ms"]["server-1"]
        assert slowed["degraded"] is False
    finally:
        fleet.links["server-1"].delay_s = 0.0
    recovered = _placed_at(fleet, "server-1", "cloud", 60)
    assert recovered["reason"] == "fastest_estimate_no_budget"

    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'placement="cloud",reason="fastest_estimate_no_budget"' in metrics
    assert 'placement="edge",reason="fastest_estimate_no_budget"' in metrics


def test_a_gateway_hands_the_model_it_cannot_run_to_its_site_peer(fleet: LocalFleet) -> None:
    gateway = fleet.edges["gw-1"].url
    assert not _ready(fleet, "gw-1", "heavy")  # not assigned: it lacks the memory

    def handed_over() -> bool:
        # Until gw-1 has heard who serves heavy on its site, restricted data has nowhere to go
        # (503 model_not_ready, never the cloud): that is the answer to wait out.
        response = httpx.post(
            f"{gateway}/v2/models/heavy/infer", json=body(data_class="restricted"), timeout=10
        )
        if response.status_code == 503 and response.json()["code"] == "model_not_ready":
            return False
        assert response.status_code == 200, response.text
        return bool(response.json()["parameters"]["placement"] == "peer")

    wait_for("gw-1 to learn its peer serves heavy", handed_over, 30)
    got = infer(gateway, "heavy", data_class="restricted")
    assert got["target"] == "server-1" and got["reason"] == "restricted_data_stays_on_site"
    public = infer(gateway, "heavy")
    assert public["reason"] == "edge_model_missing" and public["placement"] in {"peer", "cloud"}


def test_cascade_escalations_land_in_the_lake_as_hard_examples(fleet: LocalFleet) -> None:
    version = register(fleet, "casc", train_classifier_onnx(), train_classifier_onnx(seed=1))
    policy = {"kind": "cascade", "cascade": {"measure": "margin", "threshold": 2.0}}
    fleet.call(
        "PUT",
        "/api/v1/deployments/casc",
        json={"name": "casc", "version": version, "policy": policy},
    )
    wait_for("server-1 to load casc", lambda: _ready(fleet, "server-1", "casc"), 60)
    url = fleet.edges["server-1"].url
    answers = [infer(url, "casc") for _ in range(5)]
    assert all(a["escalated"] and a["placement"] == "cloud" for a in answers)
    assert all(a["reason"] == "cascade_edge_first" for a in answers)

    def landed() -> bool:
        sql = "SELECT count(*) FROM hard_examples WHERE model = 'casc'"
        return fleet.lake_count(sql) >= 5

    wait_for("the hard examples to reach the lake", landed, 60)
    escalations = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'hybridai_edge_escalations_total{model="casc",outcome="ok"} 5.0' in escalations
