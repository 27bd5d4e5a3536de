"""The live edge router over real ONNX models: placement, fallbacks, cascade, peers, metrics.

The cloud is an httpx MockTransport that serves a real ONNX model (or fails, or stalls); a site
peer is a real edge router mounted as an ASGI app.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from _models import train_classifier_onnx
from hybridai.edge.cloud_client import CloudClient
from hybridai.edge.routing.backend import EdgeBackend
from hybridai.edge.routing.hard_examples import STREAM
from hybridai.edge.routing.peer_calls import PeerCalls
from hybridai.edge.routing.placement_state import PlacementState
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.orchestrator import Breaker
from hybridai.protocol.edge_settings import DeviceSettings
from hybridai.protocol.errors import ApiError
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.placement import PlacementPolicy, SitePeer
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse
from hybridai.serving import ModelRepository, OnnxModel, install_error_handlers, v2_router

ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.7, 0.0]]
Handler = Callable[[httpx.Request], Any]


def request(**parameters: Any) -> InferenceRequest:
    return InferenceRequest.model_validate(
        {
            "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}],
            "parameters": parameters or None,
        }
    )


def repository(with_model: bool = True) -> ModelRepository:
    repo = ModelRepository()
    if with_model:
        model = OnnxModel.load("pm", "1", train_classifier_onnx(seed=0))
        model.warm_up()
        repo.put(model)
    return repo


class FakeCloud:
    """The cloud's v2 endpoint over a real (different) ONNX model; can fail or stall."""

    def __init__(self) -> None:
        self.model = OnnxModel.load("pm", "1", train_classifier_onnx(seed=1, family="logistic"))
        self.calls: list[str] = []
        self.mode = "ok"  # ok | down | slow

    async def __call__(self, http_request: httpx.Request) -> httpx.Response:
        self.calls.append(http_request.url.path)
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=http_request)
        if self.mode == "slow":
            await asyncio.sleep(2.0)
        if http_request.url.path.endswith("/health/live"):
            return httpx.Response(200, json={"live": True})
        parsed = InferenceRequest.model_validate_json(http_request.content)
        response = self.model.run(parsed)
        body = response.model_copy(update={"parameters": {"service_ms": 0.5}})
        return httpx.Response(200, content=body.model_dump_json(exclude_none=True))


def cloud_client(cloud: FakeCloud) -> CloudClient:
    return CloudClient("https://cloud.test", "edge-1", transport=httpx.MockTransport(cloud))


def backend(
    cloud: FakeCloud,
    *,
    with_model: bool = True,
    policy: PlacementPolicy | None = None,
    peers: list[SitePeer] | None = None,
    store: EdgeStore | None = None,
    device_id: str = "edge-1",
    queue_budget: int | None = 16,
    peer_transport: httpx.AsyncBaseTransport | None = None,
) -> EdgeBackend:
    desired = DesiredState(
        device_id=device_id,
        generation="g1",
        models=[
            ModelAssignment(
                name="pm",
                version="1",
                variant="edge",
                sha256="0" * 64,
                size=1,
                artifact_path="/x",
                policy=policy,
            )
        ],
        settings=DeviceSettings(site_peers=list(peers or [])),
    )

    async def keep(record: dict[str, Any]) -> None:
        assert store is not None
        store.append(STREAM, [record])

    edge = EdgeBackend(
        repository(with_model),
        cloud_client(cloud),
        PlacementState(device_id, queue_budget=queue_budget).link,
        device_id,
        cloud_timeout_s=1.0,
        state=PlacementState(device_id, queue_budget=queue_budget),
        budget_margin_ms=100.0,
        probe_interval_s=3600.0,
        hard_examples=keep if store is not None else None,
        desired=lambda: desired,
        peers=PeerCalls(device_id, transport=peer_transport),
    )
    edge._last_cloud_sample = time.monotonic()  # no background probes in these tests
    return edge


def infer(edge: EdgeBackend, req: InferenceRequest | None = None) -> dict[str, Any]:
    async def go() -> InferenceResponse:
        try:
            return await edge.infer("pm", None, req or request())
        finally:
            await edge.aclose()

    response = asyncio.run(go())
    parameters: dict[str, Any] = dict(response.parameters or {})
    parameters["_outputs"] = {o.name: o.data for o in response.outputs}
    return parameters


def test_latency_policy_runs_here_and_explains_itself() -> None:
    cloud = FakeCloud()
    got = infer(backend(cloud))
    assert got["placement"] == "edge" and got["target"] == "edge-1"
    assert got["reason"] == "no_cloud_estimate_yet"
    assert got["escalated"] is False and got["degraded"] is False
    assert set(got["estimates_ms"]) == {"edge-1", "cloud"}
    assert not cloud.calls


def test_missing_model_goes_to_the_cloud_and_fails_clearly_when_it_is_down() -> None:
    cloud = FakeCloud()
    got = infer(backend(cloud, with_model=False))
    assert (got["placement"], got["reason"]) == ("cloud", "edge_model_missing")
    assert cloud.calls == ["/v2/models/pm/infer"]

    cloud.mode = "down"
    with pytest.raises(ApiError) as error:
        infer(backend(cloud, with_model=False))
    assert error.value.status == 503 and "did not answer" in error.value.message


def test_restricted_data_never_reaches_the_cloud() -> None:
    cloud = FakeCloud()
    with pytest.raises(ApiError) as error:
        infer(backend(cloud, with_model=False), request(data_class="restricted"))
    assert error.value.status == 503
    assert "restricted_data_but_no_edge_model" in error.value.message
    assert not cloud.calls


def test_cloud_only_degrades_to_the_edge_within_budget_when_the_cloud_stalls() -> None:
    cloud = FakeCloud()
    cloud.mode = "slow"
    edge = backend(cloud, policy=PlacementPolicy(kind="cloud-only"))
    started = time.perf_counter()
    got = infer(edge, request(latency_budget_ms=50))
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert got["placement"] == "edge" and got["degraded"] is True
    assert got["reason"] == "policy_cloud_only"
    assert elapsed_ms < 50 + 100 + 150  # budget + margin + slack for a slow test machine


def test_breaker_opens_and_then_the_edge_answers_without_trying() -> None:
    cloud = FakeCloud()
    cloud.mode = "down"
    edge = backend(cloud, policy=PlacementPolicy(kind="cloud-only"))
    edge.link.breaker = Breaker(threshold=1, cooldown_s=60)
    first = infer(edge)
    assert first["degraded"] is True
    calls = len(cloud.calls)
    second = infer(edge)
    assert second["reason"] == "policy_cloud_only_but_cloud_unavailable"
    assert len(cloud.calls) == calls  # the open breaker kept the cloud out


def test_cascade_escalates_unsure_answers_and_keeps_hard_examples(tmp_path: Path) -> None:
    cloud = FakeCloud()
    store = EdgeStore(tmp_path / "store.db")
    always = PlacementPolicy.model_validate(
        {"kind": "cascade", "cascade": {"measure": "margin", "threshold": 2.0}}
    )
    got = infer(backend(cloud, policy=always, store=store))
    assert got["placement"] == "cloud" and got["escalated"] is True
    assert got["reason"] == "cascade_edge_first" and 0.0 <= got["confidence"] <= 1.0
    assert got["answered_first_by"] == "edge"
    batch = store.next_batch()
    assert batch is not None and batch.stream == STREAM
    (record,) = batch.records
    assert record.payload["model"] == "pm" and record.payload["cloud_outputs"]
    assert record.payload["edge_outputs"] != record.payload["cloud_outputs"]

    never = PlacementPolicy.model_validate({"kind": "cascade", "cascade": {"threshold": 0.0}})
    calm = infer(backend(cloud, policy=never, store=store))
    assert calm["placement"] == "edge" and calm["escalated"] is False
    store.close()


def test_cascade_with_the_cloud_down_returns_the_edge_answer_flagged() -> None:
    cloud = FakeCloud()
    cloud.mode = "down"
    always = PlacementPolicy.model_validate({"kind": "cascade", "cascade": {"threshold": 2.0}})
    got = infer(backend(cloud, policy=always))
    assert got["placement"] == "edge" and got["degraded"] is True
    assert got["escalation_failed"] is True and got["escalated"] is False


def test_cascade_keeps_only_the_outputs_asked_for() -> None:
    never = PlacementPolicy.model_validate({"kind": "cascade", "cascade": {"threshold": 0.0}})
    req = InferenceRequest.model_validate(
        {**request().model_dump(exclude_none=True), "outputs": [{"name": "label"}]}
    )
    got = infer(backend(FakeCloud(), policy=never), req)
    assert set(got["_outputs"]) == {"label"} and got["confidence"] is not None


def test_overloaded_edge_offloads_to_the_cloud() -> None:
    cloud = FakeCloud()
    edge = backend(cloud, queue_budget=0)
    for _ in range(3):
        edge.state.started("pm")
    edge.state.cloud_answered("pm", 100, 5.0, None)
    got = infer(edge)
    assert (got["placement"], got["reason"]) == ("cloud", "edge_overloaded_offloaded")


def test_a_gateway_without_the_model_hands_requests_to_its_site_peer() -> None:
    cloud = FakeCloud()
    server = backend(cloud, device_id="server-1")
    app = FastAPI()
    app.include_router(v2_router(server))
    install_error_handlers(app)
    peer = SitePeer(
        device_id="server-1", kind="edge-server", url="http://server-1.lan", models={"pm": "1"}
    )
    gateway = backend(
        cloud,
        with_model=False,
        peers=[peer],
        device_id="gw-1",
        peer_transport=httpx.ASGITransport(app=app),
    )
    got = infer(gateway, request(data_class="restricted"))
    assert got["placement"] == "peer" and got["target"] == "server-1"
    assert got["reason"] == "restricted_data_stays_on_site"
    assert not cloud.calls


def test_a_dead_peer_falls_back_to_the_cloud_only_when_allowed() -> None:
    cloud = FakeCloud()

    def refuse(http_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=http_request)

    peer = SitePeer(device_id="server-1", kind="edge-server", url="http://x", models={"pm": "1"})
    gateway = backend(
        cloud,
        with_model=False,
        peers=[peer],
        device_id="gw-1",
        peer_transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(ApiError) as error:
        infer(gateway, request(data_class="restricted"))
    assert error.value.status == 503
    assert not cloud.calls
    failures = 'hybridai_edge_upstream_failures_total{upstream="peer"} 1.0'
    assert failures in gateway.metrics.render().decode()


def test_metrics_count_decisions_by_reason() -> None:
    edge = backend(FakeCloud())
    infer(edge)
    text = edge.metrics.render().decode()
    assert 'hybridai_edge_decisions_total{model="pm",placement="edge",' in text
    assert 'reason="no_cloud_estimate_yet"} 1.0' in text
    assert "hybridai_edge_request_seconds_bucket" in text


def test_a_quick_model_runs_on_the_event_loop_and_a_slow_one_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    edge = backend(FakeCloud())
    model = edge.repository.get("pm")
    ran_on: list[int] = []
    real_run = model.run
    delay_s = [0.0]

    def run(req: InferenceRequest) -> InferenceResponse:
        time.sleep(delay_s[0])
        ran_on.append(threading.get_ident())
        return real_run(req)

    monkeypatch.setattr(model, "run", run)

    async def go() -> int:
        loop_thread = threading.get_ident()
        try:
            for _ in range(20):  # unmeasured, then quick: the first in a worker, then inline
                await edge.infer("pm", None, request(placement="edge"))
            delay_s[0] = 0.02  # the model turns slow: its mean passes the limit, back to threads
            for _ in range(12):
                await edge.infer("pm", None, request(placement="edge"))
        finally:
            await edge.aclose()
        return loop_thread

    loop_thread = asyncio.run(go())

    assert ran_on[0] != loop_thread  # nothing measured yet: a worker thread
    assert loop_thread in ran_on[1:20]  # (all of them on a quiet machine)
    assert ran_on[-1] != loop_thread
