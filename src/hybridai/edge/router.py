"""The edge router: applies the orchestrator's decision to every v2 inference request.

It builds a snapshot from live state (models loaded here, cloud circuit, latency EWMAs), asks
``orchestrator.decide`` and carries the decision out. A failed cloud call never fails the
request when the edge can answer: the edge answers, flagged ``degraded``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from hybridai import __version__
from hybridai.edge.cloud_client import CloudClient, CloudUnavailable
from hybridai.orchestrator import Breaker, Decision, Ewma, Hints, Placement, Snapshot, decide
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import InferenceStats
from hybridai.protocol.v2 import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RoutingHints,
    ServerMetadata,
)
from hybridai.serving.repository import ModelRepository


@dataclass
class CloudLink:
    """What the edge knows of its link to the cloud, fed by every call it makes."""

    breaker: Breaker = field(default_factory=Breaker)
    rtt: Ewma = field(default_factory=Ewma)

    def reachable(self, now: float) -> bool:
        return self.breaker.allows(now)

    def success(self) -> None:
        self.breaker = self.breaker.on_success()

    def failure(self, now: float) -> None:
        self.breaker = self.breaker.on_failure(now)


@dataclass
class Estimates:
    edge_ms: dict[str, Ewma] = field(default_factory=dict)
    cloud_ms: dict[str, Ewma] = field(default_factory=dict)

    def edge(self, name: str) -> float | None:
        return self.edge_ms[name].value if name in self.edge_ms else None

    def cloud(self, name: str) -> float | None:
        return self.cloud_ms[name].value if name in self.cloud_ms else None


class EdgeBackend:
    """An ``InferenceBackend`` that runs here or in the cloud, per request."""

    def __init__(
        self,
        repository: ModelRepository,
        cloud: CloudClient,
        link: CloudLink,
        device_id: str,
        cloud_timeout_s: float = 2.0,
    ) -> None:
        self.repository = repository
        self.cloud = cloud
        self.link = link
        self.device_id = device_id
        self.cloud_timeout_s = cloud_timeout_s
        self.estimates = Estimates()
        self.stats = InferenceStats()

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="hybridai-edge", version=__version__)

    def server_ready(self) -> bool:
        return True

    def _local(self, name: str, version: str | None) -> bool:
        if name not in self.repository.names():
            return False
        return version is None or version in self.repository.versions(name)

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        metadata = self.repository.get(name, version).metadata()
        return metadata.model_copy(update={"versions": self.repository.versions(name)})

    def model_ready(self, name: str, version: str | None) -> bool:
        self.repository.get(name, version)
        return True

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest
    ) -> InferenceResponse:
        try:
            hints = RoutingHints.from_parameters(request.parameters)
        except ValidationError as exc:
            raise ApiError(
                400, ErrorCode.BAD_REQUEST, f"bad routing parameters: {exc.errors()[0]['msg']}"
            ) from None
        now = time.time()
        snapshot = Snapshot(
            edge_model_ready=self._local(name, version),
            cloud_reachable=self.link.reachable(now),
            edge_estimate_ms=self.estimates.edge(name),
            cloud_estimate_ms=self.estimates.cloud(name),
        )
        decision = decide(
            Hints(hints.data_class, hints.latency_budget_ms, hints.placement), snapshot
        )
        if decision.placement is Placement.NONE:
            self.stats.requests_failed += 1
            raise ApiError(
                503,
                ErrorCode.MODEL_NOT_READY,
                f"no placement can serve '{name}' now ({decision.reason.value}): the model is "
                "not loaded at this edge and the cloud may not be used or reached; retry later",
            )
        if decision.placement is Placement.CLOUD:
            response = await self._cloud(name, version, request, hints, decision)
            if response is not None:
                return response
            decision = Decision(Placement.EDGE, decision.reason, degraded=True)
        return await self._edge(name, version, request, decision, snapshot)

    async def _edge(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        decision: Decision,
        snapshot: Snapshot,
    ) -> InferenceResponse:
        model = self.repository.get(name, version)
        started = time.perf_counter()
        response = await run_in_threadpool(model.run, request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.estimates.edge_ms[name] = self.estimates.edge_ms.get(name, Ewma()).update(elapsed_ms)
        self.stats.requests_edge += 1
        if decision.degraded:
            self.stats.degraded += 1
        return self._explain(response, "edge", decision, elapsed_ms)

    async def _cloud(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        hints: RoutingHints,
        decision: Decision,
    ) -> InferenceResponse | None:
        """The cloud's answer, or None when the edge should answer instead."""
        timeout = self.cloud_timeout_s
        if hints.latency_budget_ms is not None:
            timeout = min(timeout, max(hints.latency_budget_ms / 1000.0, 0.05))
        started = time.perf_counter()
        try:
            response = await self.cloud.infer(name, version, request, timeout)
        except CloudUnavailable:
            self.link.failure(time.time())
            if decision.fallback is Placement.EDGE:
                return None
            self.stats.requests_failed += 1
            raise ApiError(
                503,
                ErrorCode.UPSTREAM_UNAVAILABLE,
                f"the cloud did not answer for '{name}' and this edge has no copy of the model; "
                "retry later",
            ) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.link.success()
        self.estimates.cloud_ms[name] = self.estimates.cloud_ms.get(name, Ewma()).update(elapsed_ms)
        self.stats.requests_cloud += 1
        return self._explain(response, "cloud", decision, elapsed_ms)

    def _explain(
        self, response: InferenceResponse, where: str, decision: Decision, elapsed_ms: float
    ) -> InferenceResponse:
        parameters = dict(response.parameters or {})
        parameters.update(
            {
                "placement": where,
                "reason": decision.reason.value,
                "degraded": decision.degraded,
                "device_id": self.device_id,
                "service_ms": round(elapsed_ms, 3),
            }
        )
        return response.model_copy(update={"parameters": parameters})
