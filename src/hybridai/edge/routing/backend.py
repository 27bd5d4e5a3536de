"""The edge router: places each v2 request (``orchestrator.place``) and carries it out.

A request runs here, on a site peer or in the cloud.
Failures degrade, never break: a cloud or peer that fails or times out hands the request to the
decision's on-site fallback, flagged ``degraded``. Every upstream call has a timeout that keeps
the request within its latency budget plus ``budget_margin_ms``. A cascade runs the edge model
and escalates to the cloud when its confidence is below the model's threshold; escalated
inputs and both outputs are kept as hard examples (a stream that syncs to the lake). Every
response's ``parameters`` say where it ran, why, and on what estimates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from hybridai import __version__
from hybridai.edge.cloud_client import CloudUnavailable
from hybridai.edge.routing.call import Call, Outcome
from hybridai.edge.routing.deferral import DeferralRouters
from hybridai.edge.routing.hard_examples import HardExampleSink, hard_example
from hybridai.edge.routing.metrics import RouterMetrics
from hybridai.edge.routing.model_health import ModelHealthTracker
from hybridai.edge.routing.peer_calls import PEER_PARAM, PeerCalls, UpstreamFailed
from hybridai.edge.routing.placement_state import CLOUD_ID, CloudLink, PlacementState
from hybridai.edge.routing.upstreams import CloudInference, PeerInference
from hybridai.governance.egress import data_class as egress_class
from hybridai.governance.egress import strictest
from hybridai.observability import trace
from hybridai.orchestrator import (
    Decision,
    EdgeEstimate,
    Placement,
    Reason,
    RequestFacts,
    escalate,
    place,
)
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import DesiredState, InferenceStats
from hybridai.protocol.policy import DataClass
from hybridai.protocol.v2 import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RoutingHints,
    ServerMetadata,
)
from hybridai.protocol.v2_stats import ModelStatistics, RepositoryModel
from hybridai.serving.batching import Batchers, BatchMetrics, DynamicBatcher
from hybridai.serving.repository import ModelRepository

__all__ = ["CloudLink", "EdgeBackend"]

ServedHook = Callable[[str, str, InferenceRequest, InferenceResponse], None]
MIN_UPSTREAM_TIMEOUT_S = 0.02
# A model that answers within this (mean, recent) runs on the event loop: handing it to a worker
# thread and back costs more than the run, and the loop is blocked no longer than a parse takes.
INLINE_RUN_MAX_MS = 1.0


def _request_bytes(request: InferenceRequest) -> int:
    """Roughly what the request weighs on the wire (JSON numbers, a few bytes each)."""
    return 256 + sum(8 * len(t.data) for t in request.inputs)


def _inline(estimate: EdgeEstimate) -> bool:
    service = estimate.service_ms.value()
    return service is not None and service < INLINE_RUN_MAX_MS


def _output(response: InferenceResponse, name: str | None) -> Any:
    outputs = {o.name: o for o in response.outputs}
    chosen = outputs.get(name or "probabilities") or response.outputs[-1]
    return np.asarray(chosen.data, dtype=np.float64).reshape(chosen.shape)


class EdgeBackend:
    """An ``InferenceBackend`` that places each request on this node, a site peer or the cloud.

    It reaches the cloud and its site peers through two small interfaces (``upstreams``):
    ``peers`` defaults to ``PeerCalls`` over HTTP.
    """

    def __init__(
        self,
        repository: ModelRepository,
        cloud: CloudInference,
        link: CloudLink,
        device_id: str,
        cloud_timeout_s: float = 2.0,
        *,
        state: PlacementState | None = None,
        budget_margin_ms: float = 250.0,
        probe_interval_s: float = 2.0,
        hard_examples: HardExampleSink | None = None,
        desired: Callable[[], DesiredState | None] | None = None,
        peers: PeerInference | None = None,
        deferral: DeferralRouters | None = None,
    ) -> None:
        self.repository = repository
        self.cloud = cloud
        self.link = link
        self.device_id = device_id
        self.cloud_timeout_s = cloud_timeout_s
        self.state = state or PlacementState(device_id, link=link)
        self.state.link = link
        self.budget_margin_s = budget_margin_ms / 1000.0
        self.probe_interval_s = probe_interval_s
        self.hard_examples = hard_examples
        self.desired = desired
        self.deferral = deferral  # learned routers; None: the threshold decides every cascade
        self.stats = InferenceStats()
        self.on_served: ServedHook | None = None
        self.metrics = RouterMetrics()
        self.batchers = Batchers(BatchMetrics(self.metrics.registry, "hybridai_edge"))
        self.health = ModelHealthTracker()  # per version: what rollout health gates read
        self._peer_calls: PeerInference = peers if peers is not None else PeerCalls(device_id)
        self._last_cloud_sample = 0.0
        self._probe: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self._peer_calls.aclose()
        await self.batchers.aclose()

    # -- v2 backend -----------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="hybridai-edge", version=__version__)

    def server_ready(self) -> bool:
        return True

    def _local(self, name: str, version: str | None) -> bool:
        if version is None:
            return self.repository.current_version(name) is not None
        return version in self.repository.versions(name)

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        metadata = self.repository.get(name, version).metadata()
        return metadata.model_copy(update={"versions": self.repository.versions(name)})

    def model_ready(self, name: str, version: str | None) -> bool:
        self.repository.get(name, version)
        return True

    def model_statistics(self, name: str | None, version: str | None) -> list[ModelStatistics]:
        known = [(n, v) for n in self.repository.names() for v in self.repository.versions(n)]
        found = self.health.book.snapshot(name, version, known)
        if name is not None and not found:
            raise ApiError(
                404,
                ErrorCode.MODEL_NOT_FOUND,
                f"model '{name}'{f' version {version!r}' if version else ''} is neither "
                "loaded on this edge nor served by it; list its models with POST "
                "/v2/repository/index",
            )
        return found

    def repository_index(self, ready: bool) -> list[RepositoryModel]:
        return [
            RepositoryModel(name=n, version=v)
            for n in self.repository.names()
            for v in self.repository.versions(n)
        ]

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest
    ) -> InferenceResponse:
        started = time.perf_counter()
        try:
            hints = RoutingHints.from_parameters(request.parameters)
        except ValidationError as exc:
            raise ApiError(
                400, ErrorCode.BAD_REQUEST, f"bad routing parameters: {exc.errors()[0]['msg']}"
            ) from None
        if self.desired is not None:
            self.state.apply(self.desired())
        local_ready = self._local(name, version)
        if (request.parameters or {}).get(PEER_PARAM):
            return await self._for_peer(name, version, request, local_ready, started)
        now = time.time()
        n_bytes = _request_bytes(request)
        placing = self.state.placing_for(name)
        data_class = self._data_class(placing.input_stream, hints.data_class)
        facts = RequestFacts(name, data_class, hints.latency_budget_ms, hints.placement)
        candidates = self.state.candidates(name, version, local_ready, n_bytes, now)
        decision = place(facts, candidates, placing.policy)
        trace.set_model(name)  # the request's log lines name it
        self.metrics.decided(name, decision.placement.value, decision.reason.value)
        self._maybe_probe(now)
        if decision.placement is Placement.NONE or decision.target is None:
            self.stats.requests_failed += 1
            self.health.failed(name, self.repository.current_version(name))
            raise ApiError(
                503,
                ErrorCode.MODEL_NOT_READY,
                f"no placement can serve '{name}' now ({decision.reason.value}): the model is "
                "not loaded on this site and the cloud may not be used or reached; retry later",
            )
        limit_s = self.cloud_timeout_s
        if decision.budget_ms is not None:
            limit_s = decision.budget_ms / 1000.0 + self.budget_margin_s
        cascade = decision.escalate_to is not None
        call = Call(name, version, request, n_bytes, started + limit_s, all_outputs=cascade)
        try:
            outcome = await self._run(decision.target, call, decision.degraded)
        except UpstreamFailed as exc:
            if decision.fallback_target is None:
                self.stats.requests_failed += 1
                self.health.failed(name, self.repository.current_version(name))
                if exc.answer is not None:
                    raise exc.answer from None
                raise ApiError(
                    503,
                    ErrorCode.UPSTREAM_UNAVAILABLE,
                    f"'{name}' was placed on {decision.target} ({decision.reason.value}), which "
                    f"did not answer ({exc}), and nothing on this site may answer instead; "
                    "retry later",
                ) from None
            outcome = await self._run(decision.fallback_target, call, degraded=True)
        if cascade:
            outcome = await self._cascade(call, outcome)
        return self._explain(outcome, decision, started)

    def _data_class(self, input_stream: str | None, asked: DataClass) -> DataClass:
        """The request's class: what it says, raised to that of the model's input stream.

        So a model fed by a restricted stream stays on site without a hint on each request.
        """
        desired = self.desired() if self.desired is not None else None
        if input_stream is None or desired is None:
            return asked
        policy = next((p for p in desired.policies if p.stream == input_stream), None)
        return strictest(asked, egress_class(policy))

    # -- carrying a decision out --------------------------------------------------------------

    async def _run(self, target: str, call: Call, degraded: bool) -> Outcome:
        if target == self.device_id:
            here = await self._here(
                call.name, call.version, call.request, call.all_outputs, call.deadline
            )
            return Outcome(here, "edge", degraded)
        if target == CLOUD_ID:
            return Outcome(await self._cloud(call), "cloud", degraded)
        return Outcome(await self._peer(target, call), "peer", degraded)

    async def _here(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        all_outputs: bool = False,
        deadline: float | None = None,
    ) -> InferenceResponse:
        model = self.repository.get(name, version)
        batcher = self.batchers.get(model, self.state.placing_for(name).batching)
        batch: dict[str, Any] = {}
        run = request.model_copy(update={"outputs": None}) if all_outputs else request

        def timed() -> tuple[InferenceResponse, float, float]:
            begun = time.perf_counter()
            return model.run(run), begun, time.perf_counter()

        inline = _inline(self.state.model(name).edge)
        self.state.started(name)
        submitted = time.perf_counter()
        try:
            if batcher is None and inline:
                response, begun, ended = timed()  # quicker than the hop to a thread
            elif batcher is None:
                response, begun, ended = await run_in_threadpool(timed)
            else:
                response, begun, ended, batch = await _batched(batcher, run, submitted, deadline)
        finally:
            self.state.finished(name)
        self.state.served_here(name, (ended - begun) * 1000, (begun - submitted) * 1000)
        self.health.ran(name, model.version, begun - submitted, ended - begun)
        self.stats.requests_edge += 1
        if self.on_served is not None:  # drift windows (edge/drift.py): an append, no math
            self.on_served(name, model.version, run, response)
        # The response is ours (just built): annotate it in place rather than copy it.
        response.parameters = {"edge_service_ms": round((ended - begun) * 1000, 3), **batch}
        return response

    def _timeout(self, deadline: float) -> float:
        remaining = deadline - time.perf_counter()
        if remaining < MIN_UPSTREAM_TIMEOUT_S:
            raise UpstreamFailed("no time left in the latency budget")
        return min(self.cloud_timeout_s, remaining)

    async def _cloud(self, call: Call) -> InferenceResponse:
        name, n_bytes = call.name, call.n_bytes
        timeout = self._timeout(call.deadline)
        self.link.attempt(time.time())
        began = time.perf_counter()
        try:
            # wait_for bounds the whole call; httpx's timeout bounds each read or write only.
            response = await asyncio.wait_for(
                self.cloud.infer(name, call.version, call.request, timeout), timeout
            )
        except (CloudUnavailable, ApiError, TimeoutError) as exc:
            elapsed_ms = (time.perf_counter() - began) * 1000
            if isinstance(exc, ApiError) and exc.status < 500:
                if exc.status != 404:
                    raise  # the request itself is wrong: the client must hear it
                self.link.success()  # the cloud answered: it just lacks this model
                raise UpstreamFailed(f"the cloud has no '{name}'", answer=exc) from None
            self.state.cloud_failed(name, n_bytes, elapsed_ms)  # a floor for a slow link
            self.link.failure(time.time())
            self.metrics.failures.labels("cloud").inc()
            raise UpstreamFailed(f"{type(exc).__name__}: {exc}") from None
        total_ms = (time.perf_counter() - began) * 1000
        served = (response.parameters or {}).get("service_ms")
        service = float(served) if isinstance(served, int | float) else None
        self.state.cloud_answered(name, n_bytes, total_ms, service)
        self._last_cloud_sample = time.monotonic()
        self.link.success()
        self.stats.requests_cloud += 1
        return response

    async def _peer(self, peer_id: str, call: Call) -> InferenceResponse:
        peer = self.state.peers.get(peer_id)
        if peer is None:
            raise UpstreamFailed(f"peer {peer_id} left the site")
        timeout = self._timeout(call.deadline)
        try:
            return await self._peer_calls.infer(
                peer, call.name, call.version, call.request, call.n_bytes, timeout, call.all_outputs
            )
        except UpstreamFailed:
            self.metrics.failures.labels("peer").inc()
            raise

    async def _for_peer(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        local_ready: bool,
        started: float,
    ) -> InferenceResponse:
        """A request a site peer handed us: answer here or not at all (no loops, no cascade)."""
        decision = Decision(Placement.EDGE, Reason.HINT_EDGE, target=self.device_id)
        self.metrics.decided(name, "edge", "handed_over_by_site_peer")
        if not local_ready:
            self.stats.requests_failed += 1
            self.health.failed(name, self.repository.current_version(name))
            raise ApiError(
                503, ErrorCode.MODEL_NOT_READY, f"'{name}' is not loaded on {self.device_id}"
            )
        response = await self._here(name, version, request)
        return self._explain(Outcome(response, "edge"), decision, started)

    async def _cascade(self, call: Call, outcome: Outcome) -> Outcome:
        """Escalate an unsure on-site answer to the cloud; keep the input as a hard example."""
        name, request, where = call.name, call.request, outcome.where
        placing = self.state.placing_for(name)
        rule = placing.policy.cascade
        output = _output(outcome.response, placing.output)
        confidence = rule.confidence(output)
        extra: dict[str, Any] = {"confidence": round(confidence, 6), "threshold": rule.threshold}
        first = _only_asked(outcome.response, request)
        if where == "cloud":
            return replace(outcome, response=first, extra=extra)
        escalating = escalate(confidence, rule.threshold)
        if self.deferral is not None:
            version = outcome.response.model_version
            decided, said = self.deferral.decide(
                name, version, request, output, confidence, rule.threshold
            )
            escalating = decided.escalate
            extra.update(said)
        if not escalating:
            return replace(outcome, response=first, extra=extra)
        # The edge compute an escalation spent is counted: in service_ms (the whole request)
        # and here, next to the cloud's cost.
        extra["edge_ms_spent"] = round((first.parameters or {}).get("edge_service_ms") or 0.0, 3)
        try:
            answer = await self._cloud(call)
        except UpstreamFailed:
            self.metrics.escalations.labels(name, "failed").inc()
            extra["escalation_failed"] = True
            return Outcome(first, where, degraded=True, extra=extra)
        self.metrics.escalations.labels(name, "ok").inc()
        if self.hard_examples is not None:
            record = hard_example(
                self.device_id,
                name,
                request,
                first,
                answer,
                confidence,
                rule,
                where,
                self.state.placing_for(name).input_stream,
            )
            await self.hard_examples(record)
        extra["escalated"] = True
        extra["answered_first_by"] = where
        return Outcome(answer, "cloud", outcome.degraded, extra)

    # -- probes, explanations -------------------------------------------------------------------

    def _maybe_probe(self, now: float) -> None:
        """Refresh the cloud estimates with a cheap round trip when traffic no longer does."""
        if self._probe is not None and not self._probe.done():
            return
        if time.monotonic() - self._last_cloud_sample < self.probe_interval_s:
            return
        if not self.link.reachable(now):
            return
        self._last_cloud_sample = time.monotonic()
        self._probe = asyncio.get_running_loop().create_task(self._probe_once())

    async def _probe_once(self) -> None:
        began = time.perf_counter()
        try:
            await asyncio.wait_for(self.cloud.live(self.cloud_timeout_s), self.cloud_timeout_s)
        except (CloudUnavailable, ApiError, TimeoutError):
            self.link.failure(time.time())
            ok = False
        else:
            self.link.success()
            ok = True
        self.state.probed((time.perf_counter() - began) * 1000, ok)

    def _explain(self, outcome: Outcome, decision: Decision, started: float) -> InferenceResponse:
        response, where, degraded, extra = (
            outcome.response,
            outcome.where,
            outcome.degraded,
            outcome.extra,
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        if degraded:
            self.stats.degraded += 1
        version = response.model_version or "?"
        self.metrics.answered(response.model_name, version, where, degraded, elapsed_ms / 1000.0)
        self.health.answered(
            response.model_name,
            response.model_version or "?",
            elapsed_ms,
            escalated=bool(extra.get("escalated")),
            confidence=extra.get("confidence"),
        )
        parameters = dict(response.parameters or {})
        parameters.pop(PEER_PARAM, None)
        parameters.update(
            {
                "placement": where,
                "target": decision.target if where != "cloud" else CLOUD_ID,
                "reason": decision.reason.value,
                "escalated": False,
                "confidence": None,
                "degraded": degraded,
                "device_id": self.device_id,
                "service_ms": round(elapsed_ms, 3),
                "cost": self.state.cloud_cost_per_call if where == "cloud" else 0.0,
                "budget_ms": decision.budget_ms,
                "estimates_ms": {
                    k: None if v is None else round(v, 3) for k, v in decision.estimates_ms.items()
                },
                **extra,
            }
        )
        response.parameters = parameters  # every response reaching here is this call's own
        return response


async def _batched(
    batcher: DynamicBatcher, request: InferenceRequest, submitted: float, deadline: float | None
) -> tuple[InferenceResponse, float, float, dict[str, Any]]:
    """Run in the model's batch; its queue time counts as waiting, its run as service."""
    got = await batcher.run(request, deadline)
    begun = submitted + got.queue_ms / 1000
    info = {
        "queue_ms": round(got.queue_ms, 3),
        "batch_rows": got.batch_rows,
        "batch_requests": got.batch_requests,
    }
    return got.response, begun, begun + got.service_ms / 1000, info


def _only_asked(response: InferenceResponse, request: InferenceRequest) -> InferenceResponse:
    if not request.outputs:
        return response
    wanted = {o.name for o in request.outputs}
    return response.model_copy(
        update={"outputs": [o for o in response.outputs if o.name in wanted]}
    )
