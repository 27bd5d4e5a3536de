"""Dynamic batching through real processes: an edge agent and the cloud, one MLP, batching on.

Concurrent requests hinted to the edge or to the cloud are each answered with their own rows,
their own placement and budget, from batches of several requests at both tiers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from _fleet import PATIENT_EDGE, error_of, local_fleet
from _models import identity_all_types_onnx, mlp_onnx
from hybridai.cli.main import app as cli
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.protocol.v2 import InferenceRequest
from hybridai.serving.onnx_runtime import OnnxModel

pytestmark = pytest.mark.slow
FEATURES = 16
BATCHING = {"max_batch_size": 32, "max_queue_delay_ms": 60}


def register(fleet: LocalFleet, name: str, onnx: bytes) -> str:
    files = {"edge": ("edge.onnx", onnx), "cloud": ("cloud.onnx", onnx)}
    return str(fleet.call("POST", f"/api/v1/models/{name}/versions", files=files)["version"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    workspace: Path = tmp_path_factory.mktemp("batching")
    with local_fleet(workspace) as fleet:
        fleet.start_edge("e1", "plant-a", "edge-server", env=PATIENT_EDGE)
        fleet.wait_enrolled(1)
        version = register(fleet, "mlp", mlp_onnx(features=FEATURES))
        policy = {"kind": "latency", "batching": BATCHING}
        fleet.call(
            "PUT",
            "/api/v1/deployments/mlp",
            json={"name": "mlp", "version": version, "policy": policy},
        )

        def ready() -> bool:
            models = {m["name"]: m for m in fleet.edge_status("e1")["models"]}
            return "mlp" in models and models["mlp"]["state"] == "ready"

        wait_for("e1 to load mlp", ready, 60)
        yield fleet


def body(i: int) -> dict[str, Any]:
    rows = 1 + i % 3
    data = np.random.default_rng(i).standard_normal((rows, FEATURES)).round(3).tolist()
    # Even requests stay at the edge with their own budget; odd ones are sent to the cloud.
    hint = {"placement": "edge", "latency_budget_ms": 5000 + i} if i % 2 == 0 else {}
    hint = hint or {"placement": "cloud"}
    return {
        "id": f"req-{i}",
        "inputs": [{"name": "input", "shape": [rows, FEATURES], "datatype": "FP32", "data": data}],
        "parameters": hint,
    }


async def concurrently(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return list(
            await asyncio.gather(
                *(client.post(f"{url}/v2/models/mlp/infer", json=b) for b in bodies)
            )
        )


def test_concurrent_requests_are_batched_and_keep_their_own_answers(fleet: LocalFleet) -> None:
    reference = OnnxModel.load("mlp", "1", mlp_onnx(features=FEATURES))
    bodies = [body(i) for i in range(24)]
    url = fleet.edges["e1"].url
    asyncio.run(concurrently(url, bodies[:2]))  # both tiers load and warm the model

    answers = asyncio.run(concurrently(url, bodies))

    edge_batches, cloud_batches = [], []
    for i, (sent, got) in enumerate(zip(bodies, answers, strict=True)):
        assert got.status_code == 200, got.text
        answer = got.json()
        expected = reference.run(InferenceRequest.model_validate(sent))
        assert answer["id"] == f"req-{i}"
        outputs = {o["name"]: o for o in answer["outputs"]}
        for want in expected.outputs:
            assert outputs[want.name]["shape"] == want.shape
            np.testing.assert_allclose(outputs[want.name]["data"], want.data, rtol=1e-4)
        parameters = answer["parameters"]
        if i % 2 == 0:
            assert parameters["placement"] == "edge" and parameters["budget_ms"] == 5000 + i
            edge_batches.append(parameters["batch_requests"])
        else:
            assert parameters["placement"] == "cloud"
            cloud_batches.append(parameters["batch_requests"])
        assert parameters["batch_rows"] >= len(sent["inputs"][0]["data"])
        assert parameters["queue_ms"] >= 0
    assert max(edge_batches) > 1, edge_batches  # several requests shared one run
    assert max(cloud_batches) > 1, cloud_batches

    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'hybridai_edge_batch_queue_seconds_count{model="mlp"}' in metrics
    assert 'hybridai_edge_batch_rows_bucket{le="1.0",model="mlp"}' in metrics


def test_a_bad_request_fails_alone_among_batched_ones(fleet: LocalFleet) -> None:
    bodies = [body(i * 2) for i in range(6)]
    bodies[2] = {**bodies[2], "inputs": [{**bodies[2]["inputs"][0], "shape": [1, 3]}]}
    bodies[2]["inputs"][0]["data"] = [1.0, 2.0, 3.0]

    answers = asyncio.run(concurrently(fleet.edges["e1"].url, bodies))

    assert error_of(answers[2]) == (400, "shape_mismatch")
    assert all(a.status_code == 200 for i, a in enumerate(answers) if i != 2)


def test_batching_is_refused_for_a_model_without_a_batch_dimension(fleet: LocalFleet) -> None:
    version = register(fleet, "fixed", identity_all_types_onnx())
    assert fleet.api is not None
    response = fleet.api.put(
        "/api/v1/deployments/fixed",
        json={"name": "fixed", "version": version, "policy": {"batching": BATCHING}},
    )
    assert error_of(response) == (400, "invalid_input")
    assert "no dynamic first (batch) dimension" in response.json()["error"]
    unknown = fleet.api.put(
        "/api/v1/deployments/mlp",
        json={"name": "mlp", "version": "1", "policy": {"batching": {"max_batch": 4}}},
    )
    assert unknown.status_code in (400, 422), unknown.text
    assert "max_batch" in unknown.text


def test_the_cli_sends_batching_and_refuses_bad_json() -> None:
    result = CliRunner().invoke(cli, ["model", "deploy", "mlp", "1", "--batching", "{max"])
    assert result.exit_code != 0
    assert "--batching is not valid JSON" in result.output


def test_promoting_an_unbatchable_version_keeps_the_policy_and_serves_it_alone(
    fleet: LocalFleet,
) -> None:
    first = register(fleet, "mix", mlp_onnx(features=FEATURES))
    policy = {"kind": "cloud-only", "batching": BATCHING}
    fleet.call(
        "PUT", "/api/v1/deployments/mix", json={"name": "mix", "version": first, "policy": policy}
    )
    second = register(fleet, "mix", identity_all_types_onnx())

    fleet.call("POST", f"/api/v1/models/mix/versions/{second}/stage", json={"stage": "production"})

    deployed = {d["name"]: d for d in fleet.call("GET", "/api/v1/deployments")}["mix"]
    assert deployed["version"] == second
    assert deployed["policy"]["batching"]["max_batch_size"] == BATCHING["max_batch_size"]
    tensor = {"name": "in_FP32", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}
    fixed = {"name": "fixed", "shape": [2, 3], "datatype": "FP32", "data": [0.0] * 6}
    others = [
        {"name": f"in_{t}", "shape": [1, 2], "datatype": t, "data": v}
        for t, v in (
            ("BOOL", [True, False]),
            ("UINT8", [1, 2]),
            ("UINT16", [1, 2]),
            ("UINT32", [1, 2]),
            ("UINT64", [1, 2]),
            ("INT8", [1, 2]),
            ("INT16", [1, 2]),
            ("INT32", [1, 2]),
            ("INT64", [1, 2]),
            ("FP16", [1.0, 2.0]),
            ("FP64", [1.0, 2.0]),
            ("BYTES", ["a", "b"]),
        )
    ]
    body = {"inputs": [tensor, fixed, *others], "outputs": [{"name": "out_FP32"}]}
    answer = httpx.post(f"{fleet.edges['e1'].url}/v2/models/mix/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    parameters = answer.json()["parameters"]
    assert parameters["placement"] == "cloud" and "batch_rows" not in parameters
    assert answer.json()["outputs"][0]["data"] == [1.0, 2.0]
