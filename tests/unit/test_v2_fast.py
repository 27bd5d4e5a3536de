"""The v2 infer hot path: the app's own middleware, in order, then the backend; nothing else.

Every answer of the infer routes is checked on both paths in ``test_v2_routes``; here, what the
hot path must keep of the app around it: its middleware (credentials, limits, the request log
with the route template) and the routes it does not take.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.types import ASGIApp, Receive, Scope, Send
from test_v2_routes import BODY, RepositoryBackend, assert_error, load

from hybridai.observability.requests import RequestLogMiddleware
from hybridai.protocol.errors import ErrorCode
from hybridai.serving import ModelRepository, install_error_handlers, v2_router
from hybridai.serving.body_limit import BodyLimitMiddleware
from hybridai.serving.errors import error_response
from hybridai.serving.v2_fast import FastInferApp

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


class Recording:
    """A pure ASGI middleware that notes what passes, and refuses a request marked ``deny``."""

    def __init__(self, app: ASGIApp, name: str, seen: list[str]) -> None:
        self.app, self.name, self.seen = app, name, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(self.name)
            if (b"x-deny", self.name.encode()) in scope["headers"]:
                await error_response(401, ErrorCode.UNAUTHENTICATED, "denied")(scope, receive, send)
                return
        await self.app(scope, receive, send)


@pytest.fixture
def seen() -> list[str]:
    return []


@pytest.fixture
def observed() -> list[tuple[str, str, int]]:
    return []


@pytest.fixture
def client(seen: list[str], observed: list[tuple[str, str, int]]) -> Iterator[TestClient]:
    repository = ModelRepository()
    repository.put(load("1"))
    backend = RepositoryBackend(repository, "hybridai-test", "0.1.0")
    app = FastInferApp()
    app.include_router(v2_router(backend))
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda method, path: 2048)
    install_error_handlers(app)
    app.add_middleware(Recording, name="inner", seen=seen)
    app.add_middleware(Recording, name="outer", seen=seen)

    def observe(method: str, route: str, status: int, seconds: float) -> None:
        observed.append((method, route, status))

    app.add_middleware(RequestLogMiddleware, observe=observe)
    app.serve_infer_from(backend)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v2/models/failure/infer", "/v2/models/{name}/infer"),
        ("/v2/models/failure/versions/1/infer", "/v2/models/{name}/versions/{version}/infer"),
    ],
)
def test_infer_passes_the_apps_middleware_in_order(
    client: TestClient,
    seen: list[str],
    observed: list[tuple[str, str, int]],
    path: str,
    template: str,
) -> None:
    response = client.post(path, json=BODY)

    assert response.status_code == 200, response.text
    assert seen == ["outer", "inner"]
    assert observed == [("POST", template, 200)]  # the request log names the template
    assert "traceparent" in response.headers


def test_a_middleware_refusal_stops_the_request_before_the_backend(
    client: TestClient, seen: list[str]
) -> None:
    response = client.post("/v2/models/failure/infer", json=BODY, headers={"x-deny": "outer"})

    assert_error(response, 401, "unauthenticated")
    assert seen == ["outer"]


def test_the_apps_body_limit_holds_on_the_hot_path(client: TestClient) -> None:
    big: dict[str, Any] = {**BODY, "id": "x" * 4096}

    response = client.post("/v2/models/failure/infer", json=big)

    assert_error(response, 413, "payload_too_large")


def test_a_bad_model_name_is_400_invalid_name(client: TestClient) -> None:
    response = client.post("/v2/models/Bad%20Name/infer", json=BODY)

    assert_error(response, 400, "invalid_name")


def test_other_routes_take_the_framework(
    client: TestClient, observed: list[tuple[str, str, int]]
) -> None:
    metadata = client.get("/v2/models/failure")
    wrong_method = client.get("/v2/models/failure/infer")

    assert metadata.status_code == 200
    assert_error(wrong_method, 405, "bad_request")
    assert [route for _, route, _ in observed] == [
        "/v2/models/{name}",
        "/v2/models/{name}/infer",
    ]
