"""Seams that are interfaces: HTTP classes take ``transport=``; tests never patch privates.

The edge's cloud client and site-peer client are handed httpx's own seam (``MockTransport``,
``ASGITransport``); the router depends on small protocols, so it runs on any cloud.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from hybridai.edge.cloud_client import CloudClient, CloudUnavailable
from hybridai.edge.routing.backend import EdgeBackend
from hybridai.edge.routing.placement_state import CloudLink
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse
from hybridai.serving import ModelRepository

TESTS = Path(__file__).resolve().parents[1]
PRIVATE_CLIENT_ASSIGNMENT = re.compile(r"\._http\s*(:[^=]*)?=(?!=)")


def test_no_test_assigns_a_private_http_client() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_CLIENT_ASSIGNMENT.search(line)
    ]

    assert offenders == [], "inject transport= instead of assigning ._http: " + ", ".join(offenders)


@pytest.mark.parametrize(
    "line", ["client.{} = httpx.AsyncClient()", "x.{}: httpx.Client = y", "a.{}=b"]
)
def test_the_check_catches_an_assignment(line: str) -> None:
    assert PRIVATE_CLIENT_ASSIGNMENT.search(line.format("_http"))  # not spelled out: see above


def test_the_check_ignores_reads_and_comparisons() -> None:
    for line in ["await self._http.aclose()", "assert c._http == d", "self._http.post(url)"]:
        assert not PRIVATE_CLIENT_ASSIGNMENT.search(line)


def test_the_cloud_client_speaks_through_an_injected_transport() -> None:
    seen: list[tuple[str, str]] = []

    def cloud(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if request.url.path == "/v2/health/live":
            return httpx.Response(200, json={"live": True})
        if request.url.path.startswith("/v2/models/busy"):
            return httpx.Response(503, json={"error": "busy", "code": "upstream_unavailable"})
        return httpx.Response(404, json={"error": "no model 'gone'", "code": "model_not_found"})

    client = CloudClient("https://cloud.test", "edge-1", transport=httpx.MockTransport(cloud))

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        await client.live(1.0)
        await client.reconnect()  # keeps the injected transport: still no network
        await client.live(1.0)
        outcomes: list[BaseException | None] = []
        for name in ("busy", "gone"):
            try:
                await client.model_metadata(name, None)
            except (CloudUnavailable, ApiError) as exc:
                outcomes.append(exc)
        await client.aclose()
        return outcomes[0], outcomes[1]

    busy, gone = asyncio.run(scenario())

    assert seen[:2] == [("GET", "/v2/health/live")] * 2
    assert isinstance(busy, CloudUnavailable) and "HTTP 503" in str(busy)
    assert isinstance(gone, ApiError) and gone.code is ErrorCode.MODEL_NOT_FOUND


class AnswersEverything:
    """A cloud that is not an HTTP client at all: the router needs only ``CloudInference``."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest, timeout_s: float
    ) -> InferenceResponse:
        self.asked.append(name)
        return InferenceResponse(model_name=name, model_version="7", outputs=[])

    async def live(self, timeout_s: float) -> None:
        return None


def test_the_router_runs_on_any_cloud_inference() -> None:
    cloud = AnswersEverything()
    edge = EdgeBackend(ModelRepository(), cloud, CloudLink(), "edge-1", probe_interval_s=3600.0)
    request = InferenceRequest.model_validate(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    )

    async def ask() -> InferenceResponse:
        try:
            return await edge.infer("big", None, request)
        finally:
            await edge.aclose()

    answer = asyncio.run(ask())

    assert cloud.asked == ["big"]
    assert (answer.parameters or {})["placement"] == "cloud"
