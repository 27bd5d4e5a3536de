"""The v2 gRPC service (GRPCInferenceService) of a real edge and a real cloud, by tritonclient.

One cloud (TLS, tokens) and one edge (site keys) as processes, each with its gRPC port on; the
client is tritonclient.grpc, Triton's own, so the wire is checked against a client we did not
write. This module imports no hybridai gRPC module: tritonclient registers the same protobuf
names (package ``inference``) in the process-wide descriptor pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from _fleet import MODEL, PATIENT_EDGE, features, local_fleet, upload_and_deploy
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port

pytestmark = pytest.mark.slow
ROWS = 8


@dataclass
class GrpcFleet:
    fleet: LocalFleet
    edge: str  # host:port of the edge's gRPC service (plaintext, as its LAN port)
    edge_tls: str  # another edge's, over TLS with its device certificate
    cloud: str  # host:port of the cloud's
    site_key: str
    admin_token: str
    ca_file: Path


@pytest.fixture(scope="module")
def grpc_fleet(
    tmp_path_factory: pytest.TempPathFactory, classifier_onnx: bytes
) -> Iterator[GrpcFleet]:
    cloud_port, edge_port, tls_port = free_port(), free_port(), free_port()
    workspace = tmp_path_factory.mktemp("grpc")
    with local_fleet(workspace, {"HYBRIDAI_CLOUD_GRPC_PORT": str(cloud_port)}) as fleet:
        fleet.start_edge(
            "edge-g", "site-g", env={**PATIENT_EDGE, "HYBRIDAI_EDGE_GRPC_PORT": str(edge_port)}
        )
        fleet.start_edge(
            "edge-t",
            "site-g",
            env={
                **PATIENT_EDGE,
                "HYBRIDAI_EDGE_GRPC_PORT": str(tls_port),
                "HYBRIDAI_EDGE_GRPC_TLS": "true",
            },
        )
        version = upload_and_deploy(fleet, classifier_onnx)
        wait_for("the edge to serve pm", lambda: fleet.serving(MODEL, version), 60)
        token = (workspace / "cloud" / "admin.token").read_text().strip()
        yield GrpcFleet(
            fleet,
            f"127.0.0.1:{edge_port}",
            f"127.0.0.1:{tls_port}",
            f"127.0.0.1:{cloud_port}",
            fleet.site_keys["site-g"],
            token,
            fleet.ca_file,
        )


@pytest.fixture(scope="module")
def classifier_onnx() -> bytes:  # module scope: the fleet fixture needs it
    from _models import train_classifier_onnx

    return train_classifier_onnx()


def _edge(f: GrpcFleet) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f.edge)


def _cloud(f: GrpcFleet) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f.cloud, ssl=True, root_certificates=str(f.ca_file))


def _bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def _input(rows: int = ROWS) -> triton.InferInput:
    tensor = triton.InferInput("input", [rows, 4], "FP32")
    tensor.set_data_from_numpy(np.asarray(features(rows), dtype=np.float32))
    return tensor


def _refused(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def _parameters(result: triton.InferResult) -> dict[str, Any]:
    """The response's parameters as values (JSON text where the protocol has no type for one)."""
    out: dict[str, Any] = {}
    for key, parameter in result.get_response().parameters.items():
        which = parameter.WhichOneof("parameter_choice")
        out[key] = getattr(parameter, which)
    return out


def _assert_probabilities(result: triton.InferResult, rows: int = ROWS) -> np.ndarray[Any, Any]:
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and probabilities.shape == (rows, 2)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    labels = result.as_numpy("label")
    assert labels is not None and labels.shape == (rows,) and labels.dtype == np.int64
    return probabilities


def test_edge_health_metadata_and_inference_with_placement(grpc_fleet: GrpcFleet) -> None:
    key = _bearer(grpc_fleet.site_key)
    with _edge(grpc_fleet) as client:
        assert client.is_server_live() and client.is_server_ready()  # open, as over REST
        server = client.get_server_metadata(headers=key)
        assert server.name == "hybridai-edge"
        assert client.is_model_ready(MODEL, headers=key)
        metadata = client.get_model_metadata(MODEL, headers=key, as_json=True)
        assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
        assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]

        result = client.infer(MODEL, [_input()], headers=key, request_id="r-1")
        got = _assert_probabilities(result)
        response = result.get_response()
        assert response.id == "r-1" and response.model_name == MODEL
        assert response.model_version == "1"
        parameters = _parameters(result)
        assert parameters["placement"] == "edge" and parameters["device_id"] == "edge-g"
        assert parameters["reason"] and parameters["degraded"] is False
        assert float(parameters["service_ms"]) > 0  # floats travel as JSON text
        assert set(__import__("json").loads(parameters["estimates_ms"])) >= {"edge-g"}

        to_cloud = client.infer(MODEL, [_input()], headers=key, parameters={"placement": "cloud"})
        assert _parameters(to_cloud)["placement"] == "cloud"
        np.testing.assert_allclose(_assert_probabilities(to_cloud), got, atol=1e-6)
        # Triton sends Python floats as its double_param: read as the routing hint it is.
        budget = client.infer(
            MODEL, [_input()], headers=key, parameters={"latency_budget_ms": 5000.0}
        )
        assert float(_parameters(budget)["budget_ms"]) == 5000.0

    # The same rows over REST give the same answer: one backend behind both faces.
    rest = httpx.post(
        f"{grpc_fleet.fleet.edges['edge-g'].url}/v2/models/{MODEL}/infer",
        json={
            "inputs": [
                {"name": "input", "shape": [ROWS, 4], "datatype": "FP32", "data": features(ROWS)}
            ]
        },
        timeout=30,
    )
    assert rest.status_code == 200, rest.text
    by_name = {o["name"]: o for o in rest.json()["outputs"]}
    np.testing.assert_allclose(
        np.asarray(by_name["probabilities"]["data"], dtype=np.float32).reshape(ROWS, 2), got
    )


def test_edge_takes_typed_contents_too(grpc_fleet: GrpcFleet) -> None:
    """A request with InferTensorContents (no raw bytes), by Triton's own generated stub."""
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, 4])
    tensor.contents.fp32_contents.extend(np.asarray(features(2), dtype=np.float32).ravel())
    with grpc.insecure_channel(grpc_fleet.edge) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        metadata = (*_bearer(grpc_fleet.site_key).items(), ("traceparent", traceparent))
        response, call = stub.ModelInfer.with_call(request, metadata=metadata, timeout=30)
        # the caller's trace goes on here (a new span of it), as over REST
        answered = dict(call.trailing_metadata())["traceparent"]
        assert answered.startswith("00-" + "ab" * 16 + "-") and answered != traceparent
        outputs = [o.name for o in response.outputs]
        probabilities = response.raw_output_contents[outputs.index("probabilities")]
        assert np.frombuffer(probabilities, dtype="<f4").reshape(2, 2).sum(axis=1) == pytest.approx(
            [1.0, 1.0], abs=1e-4
        )
        # contents that disagree with the shape are refused, naming the field to fix
        del tensor.contents.fp32_contents[-1]
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, metadata=tuple(_bearer(grpc_fleet.site_key).items()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contents.fp32_contents" in str(caught.value.details())
    trailing = dict(caught.value.trailing_metadata() or ())
    assert trailing["hybridai-error-code"] == "shape_mismatch"


def test_edge_refuses_without_or_with_a_wrong_site_key(grpc_fleet: GrpcFleet) -> None:
    with _edge(grpc_fleet) as client:
        missing = _refused(lambda: client.infer(MODEL, [_input()]))
        wrong = _refused(lambda: client.infer(MODEL, [_input()], headers=_bearer("nope")))
        metadata = _refused(lambda: client.get_model_metadata(MODEL))
    for refused in (missing, wrong, metadata):
        assert refused.status() == "StatusCode.UNAUTHENTICATED", refused
    assert "site key" in str(missing.message())


def test_edge_answers_not_found_and_invalid_argument(grpc_fleet: GrpcFleet) -> None:
    key = _bearer(grpc_fleet.site_key)
    with _edge(grpc_fleet) as client:
        unknown = _refused(lambda: client.infer("nosuch", [_input()], headers=key))
        assert unknown.status() == "StatusCode.NOT_FOUND"
        assert "nosuch" in str(unknown.message())
        missing = _refused(lambda: client.get_model_metadata("nosuch", headers=key))
        assert missing.status() == "StatusCode.NOT_FOUND"

        short = _input(7)
        short.set_shape([ROWS, 4])  # declares 8 rows, carries 7
        sized = _refused(lambda: client.infer(MODEL, [short], headers=key))
        assert sized.status() == "StatusCode.INVALID_ARGUMENT"
        assert "must be 128 bytes" in str(sized.message()) and "not 112" in str(sized.message())

        odd = _input()
        odd._get_tensor().datatype = "FLOAT32"  # tritonclient checks; a hand-made client may not
        bad_type = _refused(lambda: client.infer(MODEL, [odd], headers=key))
        assert bad_type.status() == "StatusCode.INVALID_ARGUMENT"
        assert "FP32" in str(bad_type.message())

        bad_name = _refused(lambda: client.infer("../etc", [_input()], headers=key))
        assert bad_name.status() == "StatusCode.INVALID_ARGUMENT"

        # Bounded like the REST body: HYBRIDAI_EDGE_MAX_INFER_JSON_BYTES (2 MiB by default).
        big = triton.InferInput("input", [150_000, 4], "FP32")  # 2.4 MB
        big.set_data_from_numpy(np.zeros((150_000, 4), dtype=np.float32))
        too_big = _refused(lambda: client.infer(MODEL, [big], headers=key))
        assert too_big.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_cloud_over_tls_with_a_token(grpc_fleet: GrpcFleet) -> None:
    token = _bearer(grpc_fleet.admin_token)
    with _cloud(grpc_fleet) as client:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata(headers=token).name == "hybridai-cloud"
        assert client.is_model_ready(MODEL, headers=token)
        metadata = client.get_model_metadata(MODEL, "1", headers=token, as_json=True)
        assert metadata["outputs"][0]["name"] == "label"
        result = client.infer(MODEL, [_input()], headers=token)
        _assert_probabilities(result)
        assert result.get_response().model_version == "1"

        missing = _refused(lambda: client.infer(MODEL, [_input()]))
        wrong = _refused(lambda: client.infer(MODEL, [_input()], headers=_bearer("x.y.z")))
        for refused in (missing, wrong):
            assert refused.status() == "StatusCode.UNAUTHENTICATED", refused
        assert "authorization: Bearer" in str(missing.message())
        unknown = _refused(lambda: client.infer("nosuch", [_input()], headers=token))
        assert unknown.status() == "StatusCode.NOT_FOUND"

    # TLS where the HTTP side has it: a plaintext client does not get through.
    with triton.InferenceServerClient(grpc_fleet.cloud) as plain:
        refused = _refused(lambda: plain.is_server_live(client_timeout=5))
    assert refused.status() in {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"}


def test_edge_over_tls_with_its_device_certificate(grpc_fleet: GrpcFleet) -> None:
    key = _bearer(grpc_fleet.site_key)
    # The device certificate names the device, not a host: the client checks that name.
    secure = triton.InferenceServerClient(
        grpc_fleet.edge_tls,
        ssl=True,
        root_certificates=str(grpc_fleet.ca_file),
        channel_args=[("grpc.ssl_target_name_override", "edge-t")],
    )
    with secure as client:
        result = client.infer(MODEL, [_input()], headers=key)
        _assert_probabilities(result)
        assert _parameters(result)["device_id"] == "edge-t"
        refused = _refused(lambda: client.infer(MODEL, [_input()]))
        assert refused.status() == "StatusCode.UNAUTHENTICATED"
    with triton.InferenceServerClient(grpc_fleet.edge_tls) as plain:
        failed = _refused(lambda: plain.is_server_live(client_timeout=5))
    assert failed.status() in {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"}
