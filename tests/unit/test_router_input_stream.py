"""A model's input stream carries its data policy into every request the edge router places.

Real ONNX models; the cloud is an httpx MockTransport that counts what reaches it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from _models import train_classifier_onnx
from hybridai.edge.cloud_client import CloudClient
from hybridai.edge.routing.backend import EdgeBackend
from hybridai.edge.routing.placement_state import PlacementState
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.policy import DataPolicy
from hybridai.protocol.v2 import InferenceRequest
from hybridai.serving import ModelRepository, OnnxModel

ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.7, 0.0]]
ALWAYS = {"kind": "cascade", "cascade": {"measure": "margin", "threshold": 2.0}}
POLICIES = [
    DataPolicy(stream="formulas", classification="restricted"),
    DataPolicy(stream="telemetry", fields={"recipe": "restricted"}),
    DataPolicy(stream="readings", fields={"operator": "personal"}),
]


class Cloud:
    def __init__(self) -> None:
        self.model = OnnxModel.load("pm", "1", train_classifier_onnx(seed=1, family="logistic"))
        self.calls = 0

    async def __call__(self, http_request: httpx.Request) -> httpx.Response:
        self.calls += 1
        response = self.model.run(InferenceRequest.model_validate_json(http_request.content))
        return httpx.Response(200, content=response.model_dump_json(exclude_none=True))


def _place(input_stream: str | None, cloud: Cloud, kept: list[dict[str, Any]]) -> dict[str, Any]:
    repo = ModelRepository()
    repo.put(OnnxModel.load("pm", "1", train_classifier_onnx(seed=0)))
    policy = PlacementPolicy.model_validate({**ALWAYS, "input_stream": input_stream})
    assignment = ModelAssignment(
        name="pm", version="1", variant="edge", sha256="0" * 64, size=1, artifact_path="/x",
        policy=policy,
    )  # fmt: skip
    desired = DesiredState(device_id="e", generation="g", models=[assignment], policies=POLICIES)

    async def keep(record: dict[str, Any]) -> None:
        kept.append(record)

    state = PlacementState("e")
    edge = EdgeBackend(
        repo,
        CloudClient("https://cloud.test", "e", transport=httpx.MockTransport(cloud)),
        state.link,
        "e",
        state=state,
        probe_interval_s=3600.0,
        hard_examples=keep,
        desired=lambda: desired,
    )
    edge._last_cloud_sample = time.monotonic()
    request = InferenceRequest.model_validate(
        {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}
    )

    async def go() -> dict[str, Any]:
        try:
            return dict((await edge.infer("pm", None, request)).parameters or {})
        finally:
            await edge.aclose()

    return asyncio.run(go())


def test_a_model_fed_by_restricted_data_stays_on_site_without_a_hint() -> None:
    for stream in ("formulas", "telemetry"):  # restricted as a whole, or one field of it
        cloud, kept = Cloud(), list[dict[str, Any]]()
        got = _place(stream, cloud, kept)
        assert (got["placement"], got["reason"]) == ("edge", "restricted_data_stays_on_site")
        assert not got["escalated"] and cloud.calls == 0 and kept == []


def test_other_input_streams_escalate_and_their_hard_examples_name_the_stream() -> None:
    for stream in ("readings", None, "unknown"):
        cloud, kept = Cloud(), list[dict[str, Any]]()
        got = _place(stream, cloud, kept)
        assert got["escalated"] and cloud.calls == 1
        assert [k["input_stream"] for k in kept] == [stream or ""]
