"""tritonclient.http in its default (binary) mode against a real edge agent and a real cloud.

The edge's LAN API takes its site key (HTTP basic auth), the cloud's v2 API a bearer token over
TLS. Every v2 datatype goes through as binary tensors, BYTES included; outputs come back as
binary or JSON as asked; a request the edge places in the cloud is forwarded as plain JSON; the
statistics and repository index extensions count what was served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent.ssl
import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http.auth import BasicAuth
from tritonclient.utils import InferenceServerException

from _fleet import PATIENT_EDGE, error_of, local_fleet
from _models import ONNX_TYPES, SAMPLES, identity_all_types_onnx
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow
MODEL = "ident"
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


class Bearer:
    """A tritonclient plugin that presents the cloud's token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: Any) -> None:
        request.headers["Authorization"] = f"Bearer {self.token}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    workspace: Path = tmp_path_factory.mktemp("binary")
    with local_fleet(workspace) as fleet:
        fleet.start_edge("e1", "plant-a", "edge-server", env=PATIENT_EDGE)
        fleet.wait_enrolled(1)
        onnx = identity_all_types_onnx()
        files = {"edge": ("edge.onnx", onnx), "cloud": ("cloud.onnx", onnx)}
        version = fleet.call("POST", f"/api/v1/models/{MODEL}/versions", files=files)["version"]
        fleet.call("PUT", f"/api/v1/deployments/{MODEL}", json={"name": MODEL, "version": version})
        wait_for("e1 to load the model", lambda: fleet.serving(MODEL, str(version)), 90)
        yield fleet


def edge_client(fleet: LocalFleet) -> triton.InferenceServerClient:
    port = fleet.edges["e1"].url.rsplit(":", 1)[1]
    client = triton.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=30)
    client.register_plugin(BasicAuth("lan", fleet.site_key("plant-a")))
    return client


def cloud_client(fleet: LocalFleet) -> triton.InferenceServerClient:
    assert fleet.cloud is not None
    ca = str(fleet.ca_file)
    client = triton.InferenceServerClient(
        fleet.cloud.url.removeprefix("https://"),
        ssl=True,
        ssl_context_factory=lambda: gevent.ssl.create_default_context(cafile=ca),
        network_timeout=30,
    )
    token = (fleet.workspace / "cloud" / "admin.token").read_text().strip()
    client.register_plugin(Bearer(token))
    return client


@pytest.fixture(params=["edge", "cloud"])
def client(request: pytest.FixtureRequest, fleet: LocalFleet) -> Iterator[Any]:
    made = edge_client(fleet) if request.param == "edge" else cloud_client(fleet)
    yield made
    made.close()


def arrays() -> dict[str, np.ndarray[Any, Any]]:
    """Two rows of two of each datatype's samples (extremes included); BYTES as UTF-8."""
    made: dict[str, np.ndarray[Any, Any]] = {}
    for datatype in ONNX_TYPES:
        values = SAMPLES[datatype]
        if datatype == "BYTES":
            made[datatype] = np.array([str(v).encode() for v in values], dtype=object)
        else:
            made[datatype] = np.array(values, dtype=NUMPY[datatype])
        made[datatype] = made[datatype].reshape(2, 2)
    return made


def inputs(binary: bool = True) -> list[triton.InferInput]:
    made = []
    for datatype, array in arrays().items():
        tensor = triton.InferInput(f"in_{datatype}", [2, 2], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        made.append(tensor)
    fixed = triton.InferInput("fixed", [2, 3], "FP32")
    fixed.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3), binary_data=binary)
    return [*made, fixed]


def assert_identity(result: Any) -> None:
    for datatype, array in arrays().items():
        back = result.as_numpy(f"out_{datatype}")
        assert back.shape == (2, 2), datatype
        assert back.tolist() == array.tolist(), datatype


def test_both_tiers_announce_the_extensions(client: Any) -> None:
    metadata = client.get_server_metadata()

    assert {"binary_tensor_data", "statistics", "model_repository"} <= set(metadata["extensions"])


def test_binary_inputs_and_binary_outputs_of_every_datatype(client: Any) -> None:
    result = client.infer(MODEL, inputs())

    assert_identity(result)
    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert "binary_data_size" in outputs["out_FP32"]["parameters"]
    assert "data" not in outputs["out_FP32"]


def test_json_outputs_when_asked_next_to_binary_ones(client: Any) -> None:
    wanted = [
        triton.InferRequestedOutput("out_FP32", binary_data=False),
        triton.InferRequestedOutput("out_BYTES", binary_data=True),
        triton.InferRequestedOutput("fixed_out", binary_data=False),
    ]

    result = client.infer(MODEL, inputs(), outputs=wanted)

    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert set(outputs) == {"out_FP32", "out_BYTES", "fixed_out"}
    assert "data" in outputs["out_FP32"]
    assert result.as_numpy("out_FP32").tolist() == arrays()["FP32"].tolist()
    assert result.as_numpy("out_BYTES").tolist() == arrays()["BYTES"].tolist()
    assert "binary_data_size" in outputs["out_BYTES"]["parameters"]


def test_json_inputs_still_work_from_tritonclient(client: Any) -> None:
    json_inputs = [t for t in inputs(binary=False) if t.datatype() not in ("FP16", "BYTES")]
    binary_rest = [t for t in inputs() if t.datatype() in ("FP16", "BYTES")]

    result = client.infer(MODEL, [*json_inputs, *binary_rest])

    assert_identity(result)


def test_the_edge_forwards_binary_requests_to_the_cloud_as_json(fleet: LocalFleet) -> None:
    client = edge_client(fleet)

    result = client.infer(MODEL, inputs(), parameters={"placement": "cloud"})

    assert_identity(result)
    assert result.get_response()["parameters"]["placement"] == "cloud"
    client.close()


def test_statistics_count_what_was_served(client: Any) -> None:
    before = client.get_inference_statistics(MODEL)["model_stats"][0]
    client.infer(MODEL, inputs())
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, inputs()[:-1])  # an input missing: a failed request

    stats = client.get_inference_statistics(MODEL)["model_stats"]
    every = client.get_inference_statistics()["model_stats"]

    after = stats[0]
    assert after["name"] == MODEL
    assert after["inference_count"] == before["inference_count"] + 1
    assert after["execution_count"] >= before["execution_count"] + 1
    inference = after["inference_stats"]
    assert inference["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert inference["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    assert inference["compute_infer"]["ns"] > 0
    assert after["last_inference"] > 0
    assert MODEL in {s["name"] for s in every}


def test_statistics_of_one_version_and_of_an_unknown_model(client: Any) -> None:
    version = client.get_inference_statistics(MODEL)["model_stats"][0]["version"]

    one = client.get_inference_statistics(MODEL, version)["model_stats"]

    assert [s["version"] for s in one] == [version]
    with pytest.raises(InferenceServerException) as caught:
        client.get_inference_statistics("nosuchmodel")
    assert "nosuchmodel" in str(caught.value)


def test_the_repository_index_lists_the_model(client: Any) -> None:
    index = client.get_model_repository_index()

    assert {"name": MODEL, "state": "READY"}.items() <= next(
        m for m in index if m["name"] == MODEL
    ).items()


# --- malformed binary bodies, over the wire ---


def edge_post(fleet: LocalFleet, body: bytes, headers: dict[str, str]) -> httpx.Response:
    url = f"{fleet.edges['e1'].url}/v2/models/{MODEL}/infer"
    return httpx.post(url, content=body, headers=headers, timeout=30)


def test_a_header_length_longer_than_the_body_is_400(fleet: LocalFleet) -> None:
    header = json.dumps({"inputs": []}).encode()

    response = edge_post(fleet, header, {"Inference-Header-Content-Length": "4096"})

    assert error_of(response) == (400, "bad_header_length")


def test_sizes_that_do_not_add_up_are_400(fleet: LocalFleet) -> None:
    tensor = {
        "name": "fixed",
        "shape": [2, 3],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 24},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}

    short = edge_post(fleet, header + bytes(20), headers)
    tensor["parameters"] = {"binary_data_size": 2**40}
    huge_header = json.dumps({"inputs": [tensor]}).encode()
    huge = edge_post(
        fleet,
        huge_header + bytes(24),
        {"Inference-Header-Content-Length": str(len(huge_header))},
    )

    assert error_of(short) == (400, "binary_size_mismatch")
    assert error_of(huge) == (400, "binary_size_mismatch")
