"""The dynamic batcher on a real ONNX MLP: order, splitting, sizes, delay, failures, cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from _models import identity_all_types_onnx, mlp_onnx
from hybridai.edge.routing.placement_state import ModelLoad, PlacementState, to_placing
from hybridai.orchestrator import EdgeEstimate
from hybridai.protocol.batching import BatchingSpec
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse
from hybridai.serving.batching import Batched, Batchers, BatchMetrics, DynamicBatcher
from hybridai.serving.onnx_runtime import OnnxModel

FEATURES = 16
BAD = 999.0  # a value the fragile model refuses


@pytest.fixture(scope="module")
def mlp() -> OnnxModel:
    model = OnnxModel.load("mlp", "1", mlp_onnx(features=FEATURES))
    model.warm_up()
    return model


def request(rows: int, seed: int, *, outputs: list[str] | None = None) -> InferenceRequest:
    data = np.random.default_rng(seed).standard_normal((rows, FEATURES)).round(3)
    body: dict[str, Any] = {
        "id": f"r{seed}",
        "inputs": [
            {"name": "input", "shape": [rows, FEATURES], "datatype": "FP32", "data": data.tolist()}
        ],
    }
    if outputs is not None:
        body["outputs"] = [{"name": n} for n in outputs]
    return InferenceRequest.model_validate(body)


def spec(**kw: Any) -> BatchingSpec:
    return BatchingSpec.model_validate({"max_batch_size": 64, **kw})


async def gather(batcher: DynamicBatcher, requests: list[InferenceRequest]) -> list[Batched]:
    tasks = [asyncio.create_task(batcher.run(r)) for r in requests]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await batcher.aclose()


def probabilities(response: InferenceResponse) -> list[Any]:
    return next(o.data for o in response.outputs if o.name == "probabilities")


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_rows(mlp: OnnxModel) -> None:
    requests = [request(1 + i % 3, seed=i) for i in range(10)]
    batcher = DynamicBatcher(mlp, spec(max_queue_delay_ms=50))

    answers = asyncio.run(gather(batcher, requests))

    assert batcher.batches == 1
    for req, got in zip(requests, answers, strict=True):
        alone = mlp.run(req)
        assert got.response.id == req.id
        assert [o.shape for o in got.response.outputs] == [o.shape for o in alone.outputs]
        np.testing.assert_allclose(probabilities(got.response), probabilities(alone), rtol=1e-5)
        assert got.batch_requests == 10 and got.batch_rows == sum(
            r.inputs[0].shape[0] for r in requests
        )


def test_each_request_gets_only_the_outputs_it_asked_for(mlp: OnnxModel) -> None:
    requests = [
        request(2, 1, outputs=["label"]),
        request(2, 2),
        request(1, 3, outputs=["probabilities"]),
    ]
    answers = asyncio.run(gather(DynamicBatcher(mlp, spec(max_queue_delay_ms=30)), requests))
    assert [[o.name for o in a.response.outputs] for a in answers] == [
        ["label"],
        ["probabilities", "label"],
        ["probabilities"],
    ]
    assert answers[0].response.outputs[0].data == mlp.run(requests[0]).outputs[0].data


def test_batches_never_exceed_max_batch_size_and_keep_arrival_order(mlp: OnnxModel) -> None:
    requests = [request(1, seed=i) for i in range(10)]
    batcher = DynamicBatcher(mlp, spec(max_batch_size=4, max_queue_delay_ms=50))

    answers = asyncio.run(gather(batcher, requests))

    assert [a.batch_rows for a in answers] == [4, 4, 4, 4, 4, 4, 4, 4, 2, 2]
    assert batcher.batches == 3


def test_a_request_larger_than_max_batch_size_runs_alone(mlp: OnnxModel) -> None:
    big = request(6, seed=1)
    answers = asyncio.run(gather(DynamicBatcher(mlp, spec(max_batch_size=4)), [big]))
    assert answers[0].batch_rows == 6 and answers[0].batch_requests == 1
    assert answers[0].response.outputs[0].shape == [6, 3]


def test_a_lone_request_waits_at_most_the_queue_delay(mlp: OnnxModel) -> None:
    async def timed(delay_ms: float) -> tuple[float, Batched]:
        batcher = DynamicBatcher(mlp, spec(max_queue_delay_ms=delay_ms))
        began = time.perf_counter()
        got = await batcher.run(request(1, 1))
        await batcher.aclose()
        return (time.perf_counter() - began) * 1000, got

    waited_ms, got = asyncio.run(timed(80))
    assert 75 <= got.queue_ms < 80 + 1000
    assert waited_ms >= got.queue_ms
    _, at_once = asyncio.run(timed(0))
    assert at_once.queue_ms < 50


def test_a_preferred_size_leaves_at_once_and_the_rest_waits_for_the_delay(mlp: OnnxModel) -> None:
    requests = [request(1, seed=i) for i in range(6)]
    batcher = DynamicBatcher(mlp, spec(max_queue_delay_ms=1000, preferred_batch_sizes=[4]))

    answers = asyncio.run(gather(batcher, requests))

    assert [a.batch_rows for a in answers] == [4, 4, 4, 4, 2, 2]
    assert all(a.queue_ms < 500 for a in answers[:4])  # cut at 4 without waiting the delay
    assert all(a.queue_ms >= 950 for a in answers[4:])  # 2 is no preferred size: they wait


def test_the_largest_preferred_size_the_queue_forms_wins(mlp: OnnxModel) -> None:
    requests = [request(1, seed=i) for i in range(7)]
    batcher = DynamicBatcher(mlp, spec(max_queue_delay_ms=50, preferred_batch_sizes=[2, 4]))
    answers = asyncio.run(gather(batcher, requests))
    assert [a.batch_rows for a in answers] == [4, 4, 4, 4, 2, 2, 1]


class Fragile:
    """The MLP, except that it fails on any batch holding the value ``BAD``."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.name, self.version = model.name, model.version
        self.runs: list[int] = []

    def decode_request(self, request: InferenceRequest) -> Any:
        return self.model.decode_request(request)

    def respond(self, request: InferenceRequest, results: Mapping[str, Any]) -> InferenceResponse:
        return self.model.respond(request, results)

    def batch_problem(self) -> str | None:
        return None

    def infer(self, inputs: Mapping[str, Any], outputs: list[str] | None = None) -> Any:
        self.runs.append(int(inputs["input"].shape[0]))
        if (inputs["input"] == BAD).any():
            raise ApiError(400, ErrorCode.INVALID_INPUT, "model 'mlp' could not run on this input")
        return self.model.infer(inputs, outputs)


def test_one_bad_request_fails_alone_and_the_next_batch_works(mlp: OnnxModel) -> None:
    fragile = Fragile(mlp)
    bad = request(1, seed=9)
    bad.inputs[0].data[0][0] = BAD  # type: ignore[index]

    async def scenario() -> tuple[list[Any], list[Batched]]:
        batcher = DynamicBatcher(fragile, spec(max_queue_delay_ms=30))
        first = [request(1, 1), bad, request(2, 2)]
        tasks = [asyncio.create_task(batcher.run(r)) for r in first]
        done = await asyncio.gather(*tasks, return_exceptions=True)
        after = await asyncio.gather(*(batcher.run(request(1, 10 + i)) for i in range(3)))
        await batcher.aclose()
        return done, after

    done, after = asyncio.run(scenario())

    assert isinstance(done[1], ApiError) and done[1].status == 400
    assert "could not run on this input" in done[1].message
    assert isinstance(done[0], Batched) and isinstance(done[2], Batched)
    assert fragile.runs[:4] == [4, 1, 1, 2]  # the batch, then each request alone
    assert [a.batch_requests for a in after] == [3, 3, 3]  # the next batch runs whole
    assert fragile.runs[-1] == 3


def test_a_bad_request_is_refused_before_it_queues(mlp: OnnxModel) -> None:
    wrong = InferenceRequest.model_validate(
        {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    )
    batcher = DynamicBatcher(mlp, spec())
    with pytest.raises(ApiError) as caught:
        asyncio.run(batcher.run(wrong))
    assert caught.value.code is ErrorCode.SHAPE_MISMATCH
    unknown = request(1, 1, outputs=["nope"])
    with pytest.raises(ApiError) as caught:
        asyncio.run(batcher.run(unknown))
    assert caught.value.status == 400 and "no output 'nope'" in caught.value.message
    assert batcher.batches == 0


def test_a_cancelled_request_leaves_the_queue(mlp: OnnxModel) -> None:
    async def scenario() -> tuple[Batched, bool]:
        batcher = DynamicBatcher(mlp, spec(max_queue_delay_ms=150))
        gone = asyncio.create_task(batcher.run(request(3, 1)))
        kept = asyncio.create_task(batcher.run(request(1, 2)))
        await asyncio.sleep(0.02)
        gone.cancel()
        answer = await kept
        await batcher.aclose()
        return answer, gone.cancelled()

    answer, cancelled = asyncio.run(scenario())
    assert cancelled
    assert answer.batch_requests == 1 and answer.batch_rows == 1


def test_a_request_past_its_deadline_in_the_queue_is_answered_503(mlp: OnnxModel) -> None:
    async def scenario() -> None:
        batcher = DynamicBatcher(mlp, spec(max_queue_delay_ms=40))
        try:
            await batcher.run(request(1, 1), deadline=time.perf_counter() + 0.005)
        finally:
            await batcher.aclose()

    with pytest.raises(ApiError) as caught:
        asyncio.run(scenario())
    assert caught.value.status == 503 and "latency budget" in caught.value.message


def test_queue_time_and_batch_rows_are_recorded(mlp: OnnxModel) -> None:
    registry = CollectorRegistry()
    metrics = BatchMetrics(registry, "hybridai_test")
    requests = [request(2, seed=i) for i in range(4)]
    asyncio.run(gather(DynamicBatcher(mlp, spec(max_queue_delay_ms=20), metrics), requests))
    labels = {"model": "mlp"}
    assert registry.get_sample_value("hybridai_test_batch_queue_seconds_count", labels) == 4
    assert registry.get_sample_value("hybridai_test_batch_rows_sum", labels) == 8
    assert registry.get_sample_value("hybridai_test_batch_rows_count", labels) == 1


def test_batchers_batch_only_models_with_a_batch_dimension(mlp: OnnxModel) -> None:
    fixed = OnnxModel.load("fixed", "1", identity_all_types_onnx())
    assert fixed.batch_problem() is not None and "'fixed'" in (fixed.batch_problem() or "")
    assert mlp.batch_problem() is None

    async def scenario() -> None:
        batchers = Batchers()
        assert batchers.get(mlp, None) is None
        assert batchers.get(fixed, spec()) is None
        first = batchers.get(mlp, spec())
        assert first is not None and batchers.get(mlp, spec()) is first
        second = batchers.get(mlp, spec(max_batch_size=8))
        assert second is not None and second is not first and second.spec.max_batch_size == 8
        newer = OnnxModel.load("mlp", "2", mlp_onnx(features=FEATURES))
        assert batchers.get(newer, spec()) is not None
        assert [b.model.version for b in batchers._batchers.values()] == ["2"]  # v1 was idle
        await batchers.aclose()

    asyncio.run(scenario())


def test_the_batching_spec_refuses_unknown_fields_and_impossible_sizes() -> None:
    with pytest.raises(ValidationError, match="extra"):
        BatchingSpec.model_validate({"max_batch_size": 8, "max_delay": 1})
    with pytest.raises(ValidationError, match=r"outside 1\.\.max_batch_size"):
        spec(max_batch_size=8, preferred_batch_sizes=[4, 16])
    with pytest.raises(ValidationError):
        spec(max_batch_size=0)
    assert spec(preferred_batch_sizes=[8, 2, 8]).preferred_batch_sizes == [2, 8]
    policy = PlacementPolicy.model_validate({"batching": {"max_batch_size": 16}})
    assert policy.batching is not None and policy.batching.max_queue_delay_ms == 0.0


def test_closing_answers_what_is_queued(mlp: OnnxModel) -> None:
    async def scenario(drain: bool) -> tuple[list[Any], float]:
        batcher = DynamicBatcher(mlp, spec(max_queue_delay_ms=500))
        tasks = [asyncio.create_task(batcher.run(request(1, i))) for i in range(3)]
        await asyncio.sleep(0.02)
        began = time.perf_counter()
        await batcher.aclose(drain=drain)
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return done, time.perf_counter() - began

    drained, waited_s = asyncio.run(scenario(drain=True))
    assert all(isinstance(d, Batched) and d.batch_requests == 3 for d in drained)
    assert waited_s < 0.4  # the delay is not waited out on the way down
    refused, _ = asyncio.run(scenario(drain=False))
    assert all(isinstance(r, ApiError) and r.status == 503 for r in refused)

    async def after_close() -> None:
        batcher = DynamicBatcher(mlp, spec())
        await batcher.aclose()
        await batcher.run(request(1, 1))

    with pytest.raises(ApiError, match="being unloaded"):
        asyncio.run(after_close())


def test_a_new_spec_lets_the_old_batcher_answer_what_it_holds(mlp: OnnxModel) -> None:
    async def scenario() -> Batched:
        batchers = Batchers()
        old = batchers.get(mlp, spec(max_queue_delay_ms=100))
        assert old is not None
        waiting = asyncio.create_task(old.run(request(1, 1)))
        await asyncio.sleep(0.01)
        new = batchers.get(mlp, spec(max_queue_delay_ms=0))
        assert new is not None and new is not old
        fresh = await new.run(request(1, 2))
        assert fresh.batch_requests == 1
        answer = await waiting
        await batchers.aclose()
        return answer

    assert asyncio.run(scenario()).response.outputs[0].shape == [1, 3]


def test_the_edge_counts_a_batched_models_queue_in_batches() -> None:
    def local(policy: PlacementPolicy) -> Any:
        state = PlacementState("edge-1")
        state.placing["mlp"] = to_placing(policy)
        state.models["mlp"] = ModelLoad(EdgeEstimate().observe(5.0), inflight=32)  # one run
        return state.candidates("mlp", None, True, 512, 0.0)[0]

    alone = local(PlacementPolicy())
    batched = local(PlacementPolicy.model_validate({"batching": {"max_batch_size": 16}}))

    assert (alone.queue_depth, alone.predicted_ms) == (32, 165.0)
    assert (batched.queue_depth, batched.predicted_ms) == (2, 15.0)
