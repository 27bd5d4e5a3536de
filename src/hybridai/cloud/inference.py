"""Cloud inference: the registry's models served over the same v2 API as the edge.

Unversioned requests go to the deployed version (or the latest one when none is deployed);
the ``cloud`` variant is preferred, the ``edge`` variant serves when it is the only one.
Loaded sessions are cached; a version is loaded, verified and warmed up on first use, and
loaded again when its deployment's runtime options change (``serving.providers``). What a name
resolves to is remembered (``models.resolution``), so a request to a loaded model reads no
database: a change made here is seen by the next request, another replica's within a second.

A model with a remote tier (``cloud.remote_tier``) is forwarded to that v2 server instead.

A model whose deployment names an input stream holding restricted data is not served here:
such data never leaves the site, so its edges keep the model on site (``governance.egress``)
and a request that reaches the cloud anyway is refused (403) before it is run.
"""

from __future__ import annotations

import threading
import time

from starlette.concurrency import run_in_threadpool

from hybridai import __version__
from hybridai.cloud import policies
from hybridai.cloud.context import Cloud
from hybridai.cloud.models import registry
from hybridai.cloud.models.resolution import Resolution, Resolutions, registry_watch
from hybridai.cloud.remote_tier import RemoteTarget, RemoteTiers
from hybridai.governance.egress import data_class
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.runtime import RuntimeOptions
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata
from hybridai.protocol.v2_stats import ModelStatistics, RepositoryModel
from hybridai.serving import model_info
from hybridai.serving.batching import Batchers, BatchMetrics, DynamicBatcher
from hybridai.serving.onnx_runtime import OnnxModel
from hybridai.serving.repository import ModelRepository
from hybridai.serving.v2_stats import StatisticsBook

# A version whose recent runs took less than this (mean) runs on the event loop: handing it to a
# worker thread and back costs more than the run (the edge's rule, ``edge.routing.backend``).
INLINE_RUN_MAX_MS = 1.0
_RUN_WEIGHT = 0.1  # of the newest run in a version's mean


def _session_settings(policy: PlacementPolicy | None) -> tuple[RuntimeOptions | None, str | None]:
    """A deployment's runtime options and needed provider: what its sessions are made with."""
    if policy is None:
        return None, None
    return policy.runtime, policy.needs.execution_provider


class CloudBackend:
    """An ``InferenceBackend`` over the model registry."""

    def __init__(self, cloud: Cloud, remote: RemoteTiers | None = None) -> None:
        self._cloud = cloud
        self.remote = remote if remote is not None else RemoteTiers(cloud.metrics)
        self._repository = ModelRepository()
        model_info.watch(cloud.metrics.registry, "hybridai_cloud", self._repository)
        self._loading = threading.Lock()
        self.batchers = Batchers(BatchMetrics(cloud.metrics.registry, "hybridai_cloud"))
        # name -> the runtime options and needed provider its loaded versions run with
        self._sessions: dict[str, tuple[RuntimeOptions | None, str | None]] = {}
        self.book = StatisticsBook()  # this replica's own counters (v2 statistics extension)
        self._run_ms: dict[tuple[str, str], float] = {}  # (name, version) -> mean run time
        self.resolutions = Resolutions(self._resolution, registry_watch(cloud.sessions))

    def _resolution(self, name: str) -> Resolution:
        """What ``name`` serves, read from the store (``Resolutions`` keeps it).

        A deployment whose runtime options changed drops the name's loaded versions: they are
        loaded again on next use, and requests in flight finish on the old ones.
        """
        with self._cloud.session() as session:
            deployment = next(
                (d for d in registry.get_deployments(session) if d.name == name), None
            )
            if deployment is not None:
                version: str | None = deployment.version
            else:
                latest = registry.latest_version(session, name)
                version = None if latest is None else latest.version
            policy = deployment.policy if deployment is not None else None
            stream = policy.input_stream if policy is not None else None
            restricted = None
            if stream is not None:
                known = {p.stream: p for p in policies.list_policies(session)}
                restricted = stream if data_class(known.get(stream)) == "restricted" else None
        wanted = _session_settings(policy)
        if self._sessions.get(name, wanted) != wanted:  # redeployed with new runtime options
            self._sessions.pop(name, None)
            self._repository.remove(name)
        return Resolution(version, policy, restricted)

    def _version_for(self, name: str, version: str | None, resolution: Resolution | None) -> str:
        if version is not None:
            return version
        found = (resolution or self.resolutions.resolve(name)).version
        if found is None:
            raise ApiError(
                404,
                ErrorCode.MODEL_NOT_FOUND,
                f"model '{name}' is not in the registry; list models with `hybridai model list`",
            )
        return found

    def _loaded(self, name: str, version: str | None, resolution: Resolution) -> OnnxModel | None:
        """The loaded model a request runs, without blocking; None when it must be loaded."""
        resolved = self._version_for(name, version, resolution)
        try:
            return self._repository.get(name, resolved)
        except ApiError:  # not loaded (or dropped a moment ago for new runtime options)
            return None

    def _model(self, name: str, version: str | None) -> OnnxModel:
        resolved = self._version_for(name, version, None)
        if resolved in self._repository.versions(name):
            return self._repository.get(name, resolved)
        with self._loading:
            if resolved in self._repository.versions(name):
                return self._repository.get(name, resolved)
            with self._cloud.session() as session:
                info = registry.get_version(session, name, resolved)
                variants = {a.variant for a in info.artifacts}
                variant = "cloud" if "cloud" in variants else "edge"
                artifact = registry.read_artifact(
                    session, self._cloud.blobs, name, resolved, variant
                )
                policy = next(
                    (d.policy for d in registry.get_deployments(session) if d.name == name), None
                )
            runtime, needed = _session_settings(policy)
            model = OnnxModel.load(
                name,
                resolved,
                artifact,
                threads=2,
                runtime=runtime,
                needed_provider=needed,
                providers=self._cloud.settings.execution_providers,
            )
            model.warm_up()
            self._repository.put(model, make_current=False)
            self._sessions[name] = (runtime, needed)
            return model

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="hybridai-cloud", version=__version__)

    def server_ready(self) -> bool:
        return True

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        target = self.remote.target(name)
        if target is not None:  # the remote's tensors, under the cloud's name
            return target.metadata(version)
        metadata = self._model(name, version).metadata()
        with self._cloud.session() as session:
            versions = next(
                (m.versions for m in registry.list_models(session) if m.name == name), []
            )
        return metadata.model_copy(update={"versions": versions})

    def model_ready(self, name: str, version: str | None) -> bool:
        target = self.remote.target(name)
        if target is not None:  # ready while its health check passes and its breaker allows
            return target.healthy is not False and target.breaker.allows(time.monotonic())
        self._model(name, version)
        return True

    def _registered(self) -> list[tuple[str, str]]:
        with self._cloud.session() as session:
            return [(m.name, v) for m in registry.list_models(session) for v in m.versions]

    def model_statistics(self, name: str | None, version: str | None) -> list[ModelStatistics]:
        found = self.book.snapshot(name, version, self._registered())
        if name is not None and not found:
            raise ApiError(
                404,
                ErrorCode.MODEL_NOT_FOUND,
                f"model '{name}'{f' version {version!r}' if version else ''} is not in the "
                "registry; list models with POST /v2/repository/index",
            )
        return found

    def repository_index(self, ready: bool) -> list[RepositoryModel]:
        return [RepositoryModel(name=n, version=v) for n, v in self._registered()]

    @staticmethod
    def _refuse_restricted(name: str, resolution: Resolution) -> None:
        """403 for a model fed by a stream that holds restricted data (it stays on site)."""
        stream = resolution.restricted_stream
        if stream is not None:
            raise ApiError(
                403,
                ErrorCode.FORBIDDEN,
                f"model '{name}' is fed by stream '{stream}', which holds restricted data: "
                "that never leaves the site, so the cloud does not serve it; ask an edge of the "
                "site",
            )

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest
    ) -> InferenceResponse:
        resolution = self.resolutions.fresh(name)
        if resolution is None:  # a read of the store: off the loop
            resolution = await run_in_threadpool(self.resolutions.resolve, name)
        self._refuse_restricted(name, resolution)
        target = self.remote.target(name)
        if target is not None:
            return await self._remote(target, name, version, request)
        model = self._loaded(name, version, resolution)
        if model is None:
            model = await run_in_threadpool(self._model, name, version)
        policy = resolution.policy
        batcher = self.batchers.get(model, policy.batching if policy is not None else None)
        if batcher is not None:
            return await self._batched(batcher, name, request)
        started = time.perf_counter()

        def timed() -> tuple[InferenceResponse, float, float]:
            begun = time.perf_counter()
            return model.run(request), begun, time.perf_counter()

        key = (name, model.version)
        mean_ms = self._run_ms.get(key)
        try:
            if mean_ms is not None and mean_ms < INLINE_RUN_MAX_MS:
                response, begun, ended = timed()  # quicker than the hop to a thread
            else:
                response, begun, ended = await run_in_threadpool(timed)
        except Exception:
            self.book.failed(name, model.version, int((time.perf_counter() - started) * 1e9))
            raise
        run_ms = (ended - begun) * 1000
        self._run_ms[key] = (
            run_ms if mean_ms is None else mean_ms + _RUN_WEIGHT * (run_ms - mean_ms)
        )
        self.book.executed(
            name, model.version, int((begun - started) * 1e9), int((ended - begun) * 1e9)
        )
        self.book.succeeded(name, model.version, int((time.perf_counter() - started) * 1e9))
        service_ms = round((time.perf_counter() - started) * 1000, 3)
        # service_ms lets a caller split its round trip into network and model time. The
        # response is ours (just built): annotated in place rather than copied.
        response.parameters = {
            **(response.parameters or {}),
            "placement": "cloud",
            "reason": "served_by_cloud",
            "service_ms": service_ms,
        }
        return response

    async def _remote(
        self, target: RemoteTarget, name: str, version: str | None, request: InferenceRequest
    ) -> InferenceResponse:
        """Forwarded to the model's remote tier: counted as answered here, not as run here."""
        started = time.perf_counter()
        try:
            response = await target.infer(version, request)
        except Exception:
            self.book.failed(name, version or "remote", int((time.perf_counter() - started) * 1e9))
            raise
        elapsed_ns = int((time.perf_counter() - started) * 1e9)
        self.book.succeeded(name, version or response.model_version or "remote", elapsed_ns)
        return response

    async def _batched(
        self, batcher: DynamicBatcher, name: str, request: InferenceRequest
    ) -> InferenceResponse:
        """Run in the model's batch; ``service_ms`` is its time here, queue included."""
        started = time.perf_counter()
        version = batcher.model.version
        try:
            got = await batcher.run(request)
        except Exception:
            self.book.failed(name, version, int((time.perf_counter() - started) * 1e9))
            raise
        self.book.executed(name, version, int(got.queue_ms * 1e6), int(got.service_ms * 1e6))
        self.book.succeeded(name, version, int((time.perf_counter() - started) * 1e9))
        parameters = dict(got.response.parameters or {})
        parameters.update(
            {
                "placement": "cloud",
                "reason": "served_by_cloud",
                "service_ms": round((time.perf_counter() - started) * 1000, 3),
                "queue_ms": round(got.queue_ms, 3),
                "batch_rows": got.batch_rows,
                "batch_requests": got.batch_requests,
            }
        )
        got.response.parameters = parameters
        return got.response
