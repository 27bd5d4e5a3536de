from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import numpy as np
import pytest
from fastapi import FastAPI
from httpx import Response
from starlette.exceptions import StarletteDeprecationWarning

from _models import train_classifier_onnx
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata
from hybridai.protocol.v2_stats import ModelStatistics, RepositoryModel
from hybridai.serving import (
    InferenceBackend,
    ModelRepository,
    OnnxModel,
    install_error_handlers,
    v2_router,
)
from hybridai.serving.v2_fast import FastInferApp
from hybridai.serving.v2_stats import StatisticsBook

with warnings.catch_warnings():
    # Starlette now prefers httpx2, which this environment lacks; httpx still works.
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.7, 0.0]]
BODY: dict[str, Any] = {
    "id": "req-1",
    "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}],
}


class RepositoryBackend:
    """The v2 routes' backend in these tests: a ``ModelRepository``, run in a worker thread.

    ``ready`` lets the owner hold readiness down (e.g. until the first desired state is
    loaded); without it the server is ready as soon as it runs.
    """

    def __init__(
        self,
        repository: ModelRepository,
        server_name: str,
        server_version: str,
        *,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.repository = repository
        self._metadata = ServerMetadata(name=server_name, version=server_version)
        self._ready = ready
        self.book = StatisticsBook()

    def server_metadata(self) -> ServerMetadata:
        return self._metadata

    def server_ready(self) -> bool:
        return self._ready() if self._ready is not None else True

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        metadata = self.repository.get(name, version).metadata()
        return metadata.model_copy(update={"versions": self.repository.versions(name)})

    def model_ready(self, name: str, version: str | None) -> bool:
        self.repository.get(name, version)  # only loaded, warmed-up models are in it
        return True

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest
    ) -> InferenceResponse:
        model = self.repository.get(name, version)  # pinned: a swap now does not affect us
        try:
            response = await anyio.to_thread.run_sync(model.run, request)
        except ApiError:
            self.book.failed(name, model.version, 1)
            raise
        self.book.executed(name, model.version, 1, 1)
        self.book.succeeded(name, model.version, 2)
        return response

    def model_statistics(self, name: str | None, version: str | None) -> list[ModelStatistics]:
        known = [(n, v) for n in self.repository.names() for v in self.repository.versions(n)]
        found = self.book.snapshot(name, version, known)
        if name is not None and not found:
            raise ApiError(404, ErrorCode.MODEL_NOT_FOUND, f"no model '{name}'")
        return found

    def repository_index(self, ready: bool) -> list[RepositoryModel]:
        return [
            RepositoryModel(name=n, version=v)
            for n in self.repository.names()
            for v in self.repository.versions(n)
        ]


def make_app(backend: InferenceBackend, kind: type[FastAPI] = FastAPI) -> FastAPI:
    """The routes alone, or (``FastInferApp``) with infer on the hot path outside the framework."""
    app = kind()
    app.include_router(v2_router(backend))
    install_error_handlers(app)
    if isinstance(app, FastInferApp):
        app.serve_infer_from(backend)
    return app


def load(version: str, seed: int = 0) -> OnnxModel:
    model = OnnxModel.load("failure", version, train_classifier_onnx(seed=seed))
    model.warm_up()
    return model


def assert_error(response: Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code
    message: str = body["error"]
    return message


@pytest.fixture
def repository() -> ModelRepository:
    repo = ModelRepository()
    repo.put(load("1"))
    return repo


@pytest.fixture(params=[FastAPI, FastInferApp], ids=["routes", "fast-path"])
def app_kind(request: pytest.FixtureRequest) -> type[FastAPI]:
    kind: type[FastAPI] = request.param
    return kind


@pytest.fixture
def client(repository: ModelRepository, app_kind: type[FastAPI]) -> Iterator[TestClient]:
    backend = RepositoryBackend(repository, "hybridai-test", "0.1.0")
    with TestClient(make_app(backend, app_kind)) as c:
        yield c


# --- health and server metadata ---


def test_live(client: TestClient) -> None:
    response = client.get("/v2/health/live")

    assert response.status_code == 200
    assert response.json() == {"live": True}


def test_ready(client: TestClient) -> None:
    response = client.get("/v2/health/ready")

    assert response.status_code == 200
    assert response.json() == {"ready": True}


def test_not_ready_answers_400(repository: ModelRepository) -> None:
    backend = RepositoryBackend(repository, "s", "1", ready=lambda: False)

    with TestClient(make_app(backend)) as client:
        response = client.get("/v2/health/ready")
        live = client.get("/v2/health/live")

    assert_error(response, 400, "model_not_ready")
    assert live.status_code == 200


def test_server_metadata(client: TestClient) -> None:
    response = client.get("/v2")

    assert response.status_code == 200
    assert response.json() == {
        "name": "hybridai-test",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data", "statistics", "model_repository"],
    }


# --- model metadata and readiness ---


@pytest.mark.parametrize("path", ["/v2/models/failure", "/v2/models/failure/versions/1"])
def test_model_metadata(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "failure"
    assert body["versions"] == ["1"]
    assert body["platform"] == "onnxruntime_onnx"
    assert body["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert body["parameters"] == {"provider": "CPUExecutionProvider"}  # where it really runs


def test_model_metadata_lists_every_known_version(
    client: TestClient, repository: ModelRepository
) -> None:
    repository.put(load("10", seed=1), make_current=False)
    repository.put(load("2", seed=2), make_current=False)

    body = client.get("/v2/models/failure/versions/2").json()

    assert body["versions"] == ["1", "2", "10"]


@pytest.mark.parametrize(
    "path", ["/v2/models/failure/ready", "/v2/models/failure/versions/1/ready"]
)
def test_model_ready(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.json() == {"name": "failure", "ready": True}


@pytest.mark.parametrize("suffix", ["", "/ready", "/versions/1", "/versions/1/ready"])
def test_unknown_model_is_404_listing_available_models(client: TestClient, suffix: str) -> None:
    message = assert_error(client.get(f"/v2/models/pump{suffix}"), 404, "model_not_found")

    assert "'pump'" in message
    assert "available models: failure" in message


@pytest.mark.parametrize("suffix", ["", "/ready"])
def test_unknown_version_is_404_listing_versions(client: TestClient, suffix: str) -> None:
    response = client.get(f"/v2/models/failure/versions/9{suffix}")

    message = assert_error(response, 404, "version_not_found")
    assert "'9'" in message
    assert "available versions: 1" in message


class LoadingBackend(RepositoryBackend):
    """A backend whose models are known but still loading, as a remote server may report."""

    def model_ready(self, name: str, version: str | None) -> bool:
        super().model_ready(name, version)
        return False


def test_model_not_ready_answers_400(repository: ModelRepository) -> None:
    with TestClient(make_app(LoadingBackend(repository, "s", "1"))) as client:
        response = client.get("/v2/models/failure/versions/1/ready")

    message = assert_error(response, 400, "model_not_ready")
    assert "version '1'" in message


# --- inference ---


@pytest.mark.parametrize(
    "path", ["/v2/models/failure/infer", "/v2/models/failure/versions/1/infer"]
)
def test_infer(client: TestClient, path: str) -> None:
    response = client.post(path, json=BODY)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("failure", "1", "req-1")
    assert "parameters" not in body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["shape"] == [2]
    assert outputs["probabilities"] == {
        "name": "probabilities",
        "shape": [2, 2],
        "datatype": "FP32",
        "data": outputs["probabilities"]["data"],
    }
    assert InferenceResponse.model_validate(body).outputs[1].data[0] >= 0.0


def test_infer_unknown_model_is_404(client: TestClient) -> None:
    response = client.post("/v2/models/pump/infer", json=BODY)

    assert_error(response, 404, "model_not_found")


def test_infer_unknown_version_is_404(client: TestClient) -> None:
    response = client.post("/v2/models/failure/versions/3/infer", json=BODY)

    assert_error(response, 404, "version_not_found")


def binary_body(rows: list[list[float]], **parameters: Any) -> tuple[bytes, dict[str, str]]:
    raw = np.asarray(rows, dtype="<f4").tobytes()
    tensor = {"name": "input", "shape": [len(rows), 4], "datatype": "FP32"}
    header = json.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}], **parameters}
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_infer_with_binary_tensors(client: TestClient) -> None:
    body, headers = binary_body(
        ROWS, outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}]
    )

    response = client.post("/v2/models/failure/infer", content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    [output] = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 16}
    probabilities = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_infer_with_binary_tensors_refuses_sizes_that_do_not_add_up(client: TestClient) -> None:
    body, headers = binary_body(ROWS)

    short = client.post("/v2/models/failure/infer", content=body[:-4], headers=headers)
    long = client.post(
        "/v2/models/failure/infer", content=body, headers={"Inference-Header-Content-Length": "x"}
    )

    assert "add up" in assert_error(short, 400, "binary_size_mismatch")
    assert assert_error(long, 400, "bad_header_length")


def test_compressed_bodies_are_415(client: TestClient) -> None:
    response = client.post(
        "/v2/models/failure/infer", content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}
    )

    assert "uncompressed" in assert_error(response, 415, "unsupported_media_type")


def test_statistics_count_successes_and_failures(client: TestClient) -> None:
    client.post("/v2/models/failure/infer", json=BODY)
    client.post("/v2/models/failure/infer", json=with_input(shape=[3, 4]))

    every = client.get("/v2/models/stats")
    one = client.get("/v2/models/failure/versions/1/stats")

    assert every.status_code == 200 and one.status_code == 200
    assert every.json() == one.json()
    [stats] = one.json()["model_stats"]
    assert (stats["name"], stats["version"]) == ("failure", "1")
    assert stats["inference_count"] == 1
    assert stats["execution_count"] == 1
    assert stats["inference_stats"]["success"] == {"count": 1, "ns": 2}
    assert stats["inference_stats"]["fail"] == {"count": 1, "ns": 1}
    assert stats["batch_stats"] == []


def test_statistics_of_an_unknown_model_is_404(client: TestClient) -> None:
    response = client.get("/v2/models/pump/stats")

    assert_error(response, 404, "model_not_found")


def test_repository_index(client: TestClient) -> None:
    response = client.post("/v2/repository/index")
    ready = client.post("/v2/repository/index", json={"ready": True})
    bad = client.post("/v2/repository/index", json={"ready": "sometimes"})

    assert response.json() == [{"name": "failure", "version": "1", "state": "READY", "reason": ""}]
    assert ready.json() == response.json()
    assert_error(bad, 400, "bad_request")


def with_input(**changes: Any) -> dict[str, Any]:
    return {**BODY, "inputs": [{**BODY["inputs"][0], **changes}]}


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (with_input(shape=[4, 2], data=ROWS), "shape_mismatch", "[-1, 4]"),
        (with_input(shape=[3, 4], data=ROWS), "shape_mismatch", "(12 elements)"),
        (with_input(datatype="FP64"), "datatype_mismatch", "must be FP32 but is FP64"),
        (with_input(data=[[1, 2, 3, "x"], ROWS[1]]), "datatype_mismatch", "holds a str"),
        (with_input(name="features"), "input_not_found", "'features'"),
        ({**BODY, "outputs": [{"name": "score"}]}, "bad_request", "'score'"),
    ],
    ids=["shape", "count", "datatype", "element", "input-name", "output-name"],
)
def test_infer_refuses_what_the_model_cannot_take(
    client: TestClient, body: dict[str, Any], code: str, fragment: str
) -> None:
    message = assert_error(client.post("/v2/models/failure/infer", json=body), 400, code)

    assert fragment in message
    assert "'x'" not in message  # an error names the input, never a value it holds


@pytest.mark.parametrize("raw", [b"", b"{", b'{"inputs": [}', b"\xff\xfe", b"not json"], ids=repr)
def test_malformed_json_is_400_malformed_json(client: TestClient, raw: bytes) -> None:
    response = client.post(
        "/v2/models/failure/infer", content=raw, headers={"content-type": "application/json"}
    )

    message = assert_error(response, 400, "malformed_json")
    assert "not valid JSON" in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "inputs: Field required"),
        ([], "Input should be an object"),
        (with_input(datatype="FP8"), "inputs.0.datatype"),
        (with_input(shape="2x4"), "inputs.0.shape"),
        ({**BODY, "model": "failure"}, "model: Extra inputs are not permitted"),
    ],
    ids=["no-inputs", "array", "datatype", "shape-type", "extra-field"],
)
def test_schema_violation_is_400_bad_request(client: TestClient, body: Any, fragment: str) -> None:
    message = assert_error(client.post("/v2/models/failure/infer", json=body), 400, "bad_request")

    assert fragment in message


def test_concurrent_requests_all_answer(client: TestClient) -> None:
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: client.post("/v2/models/failure/infer", json=BODY), range(24))
        )

    assert {r.status_code for r in responses} == {200}


# --- version swap ---


def test_swap_serves_new_version_while_old_stays_addressable(
    client: TestClient, repository: ModelRepository
) -> None:
    repository.put(load("2", seed=3))

    current = client.post("/v2/models/failure/infer", json=BODY).json()
    pinned = client.post("/v2/models/failure/versions/1/infer", json=BODY).json()

    assert current["model_version"] == "2"
    assert pinned["model_version"] == "1"


def test_swap_does_not_disturb_a_request_in_flight(repository: ModelRepository) -> None:
    in_flight = repository.get("failure")  # what RepositoryBackend.infer holds while it runs

    repository.put(load("2", seed=3))
    repository.retain("failure", {"2"})

    assert in_flight.run(InferenceRequest.model_validate(BODY)).model_version == "1"
    assert repository.get("failure").version == "2"
    assert repository.versions("failure") == ["2"]


# --- errors outside the models ---


def test_unknown_route_is_404_not_found(client: TestClient) -> None:
    message = assert_error(client.get("/v2/nothing/here"), 404, "not_found")

    assert "/v2/nothing/here" in message


def test_wrong_method_is_405_bad_request(client: TestClient) -> None:
    response = client.get("/v2/models/failure/infer")

    message = assert_error(response, 405, "bad_request")
    assert "POST" in response.headers["allow"]
    assert "does not accept GET" in message


class BrokenBackend(RepositoryBackend):
    """A backend with a bug: the server must answer 500 and keep serving."""

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest
    ) -> InferenceResponse:
        raise RuntimeError("bug in the backend")


def test_unexpected_error_is_a_logged_500(
    repository: ModelRepository, app_kind: type[FastAPI], caplog: pytest.LogCaptureFixture
) -> None:
    with (
        TestClient(make_app(BrokenBackend(repository, "s", "1"), app_kind)) as client,
        caplog.at_level(logging.ERROR, logger="hybridai.serving"),
    ):
        response = client.post("/v2/models/failure/infer", json=BODY)
        after = client.get("/v2/models/failure/ready")

    message = assert_error(response, 500, "internal")
    assert "server log" in message
    assert "bug in the backend" not in message
    assert any("bug in the backend" in (r.exc_text or "") for r in caplog.records)
    assert after.status_code == 200


def test_request_validation_errors_of_other_routes_use_the_error_body() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    def echo(request: InferenceRequest) -> int:
        return len(request.inputs)

    @app.get("/teapot")
    def teapot() -> None:
        raise ApiError(418, ErrorCode.CONFLICT, "short and stout")

    with TestClient(app) as client:
        bad = client.post("/echo", json={"inputs": "none"})
        broken = client.post("/echo", content=b"{", headers={"content-type": "application/json"})
        tea = client.get("/teapot")

    assert "body.inputs" in assert_error(bad, 400, "bad_request")
    assert_error(broken, 400, "malformed_json")
    assert assert_error(tea, 418, "conflict") == "short and stout"


# --- OpenAPI ---


def test_openapi_documents_the_infer_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    operation = spec["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "inputs" in schema["properties"]
    assert "$ref" not in str(schema)
    assert "404" in operation["responses"]


# --- repository ---


@pytest.fixture
def empty() -> ModelRepository:
    return ModelRepository()


def test_first_version_becomes_current_even_without_asking(empty: ModelRepository) -> None:
    empty.put(load("1"), make_current=False)
    empty.put(load("2"), make_current=False)

    assert empty.current_version("failure") == "1"
    assert empty.get("failure").version == "1"
    assert empty.get("failure", "2").version == "2"


def test_retain_never_drops_the_current_version(empty: ModelRepository) -> None:
    for version in ("1", "2", "3"):
        empty.put(load(version))

    empty.retain("failure", {"1"})
    empty.retain("missing", set())

    assert empty.versions("failure") == ["1", "3"]


def test_names_versions_and_remove(empty: ModelRepository) -> None:
    empty.put(load("1"))

    before = (empty.names(), empty.versions("failure"))
    empty.remove("failure")

    assert before == (["failure"], ["1"])
    assert (empty.names(), empty.versions("failure")) == ([], [])
    assert empty.current_version("failure") is None
    with pytest.raises(ApiError, match="available models: none"):
        empty.get("failure")


def test_concurrent_swaps_and_reads_stay_consistent(empty: ModelRepository) -> None:
    models = [load(str(v)) for v in range(1, 5)]
    empty.put(models[0])

    def swap_and_read(i: int) -> str:
        empty.put(models[i % 4])
        return empty.get("failure").version

    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(swap_and_read, range(200)))

    assert seen <= {"1", "2", "3", "4"}
    assert empty.versions("failure") == ["1", "2", "3", "4"]
