"""The cloud control plane as one FastAPI app: thin routes over the cloud's services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from hybridai import __version__
from hybridai.cloud.api import ROUTERS, health, metrics, sync
from hybridai.cloud.auth import principal, require_user_or_device
from hybridai.cloud.context import Cloud
from hybridai.cloud.grpc_access import token_admit
from hybridai.cloud.infer_access import InferAccess
from hybridai.cloud.inference import CloudBackend
from hybridai.cloud.models.rollout_ticker import rollout_step
from hybridai.cloud.operations.loops import alert_step, compact_step
from hybridai.cloud.operations.notify import Notifier
from hybridai.cloud.operations.tickers import Tickers
from hybridai.cloud.people.auditing import AuditMiddleware
from hybridai.cloud.pipelines.retraining import retraining_step
from hybridai.cloud.remote_tier import RemoteTiers, remote_tier_step
from hybridai.cloud.settings import CloudSettings
from hybridai.dashboard import mount as dashboard
from hybridai.link.proxied_tls import ProxiedTls
from hybridai.link.tls import ServerTls
from hybridai.observability.requests import RequestLogMiddleware
from hybridai.observability.supervisor import Supervisor
from hybridai.protocol.errors import ErrorCode
from hybridai.serving.body_limit import BodyLimitMiddleware, LimitFor
from hybridai.serving.errors import error_response, install_error_handlers
from hybridai.serving.grpc_server import GrpcInferenceServer
from hybridai.serving.v2_fast import FastInferApp
from hybridai.serving.v2_routes import v2_router
from hybridai.storage.blobs import BlobStorageError

# Routes anyone may call: probes, the API's description, enrollment (the token is the
# credential) and login (the password is). Every other route requires an identity.
OPEN_PATHS = ("/v2/health/", "/docs", "/redoc", "/openapi.json", "/ui")  # /ui: by cookie
OPEN_ROUTES = frozenset({"/api/v1/enroll", "/api/v1/auth/login"})


def _body_limits(settings: CloudSettings) -> LimitFor:
    def limit(method: str, path: str) -> int:
        if "/batches/" in path:
            return sync.MAX_BATCH_BYTES
        if path.startswith("/api/v1/models/") and path.endswith(("/versions", "/calibration/data")):
            return settings.max_upload_bytes  # model files, and validation rows as Parquet
        if path.startswith("/v2/"):
            return settings.max_infer_json_bytes
        return settings.max_request_bytes

    return limit


def _identified(request: Request) -> None:
    """Every route but the open ones needs a caller identity, checked before the body is.

    Each route then asks for its action (``require``); this app-wide check makes a route that
    forgot to do so fail closed for strangers, and answers 401 before any validation error.
    """
    path = request.url.path
    if path not in OPEN_ROUTES and not path.startswith(OPEN_PATHS):
        principal(request)


def _v2_access(request: Request) -> None:
    """Cloud inference: devices, and people allowed to read; health probes stay open."""
    if not request.url.path.startswith("/v2/health/"):
        require_user_or_device(request, "read")


async def _blob_store_failed(request: Request, exc: Exception) -> JSONResponse:
    """The blob store (a folder or an S3 bucket) failed: 503, for the operator to fix."""
    return error_response(503, ErrorCode.UPSTREAM_UNAVAILABLE, f"{exc}; try again once it is fixed")


async def _start_grpc(cloud: Cloud, backend: CloudBackend) -> GrpcInferenceServer | None:
    """The v2 gRPC service on ``grpc_port`` (off when unset): the API's certificate, tokens."""
    settings = cloud.settings
    if settings.grpc_port is None:
        return None
    pki_dir = settings.pki_dir
    server = GrpcInferenceServer(
        backend,
        settings.host,
        settings.grpc_port,
        admit=token_admit(cloud),
        max_message_bytes=settings.max_infer_json_bytes,
        tls=ServerTls(pki_dir / "server.crt", pki_dir / "server.key", pki_dir / "ca.crt"),
    )
    await server.start()
    return server


def create_app(cloud: Cloud) -> FastAPI:
    loops = Supervisor()  # the background loops; their health is GET /api/v1/health
    notifier = Notifier(cloud.settings.alert_webhooks)  # alerts, by log and webhook
    remote = RemoteTiers(cloud.metrics)  # models another v2 server serves (cloud.remote_tier)
    backend = CloudBackend(cloud, remote)  # REST and gRPC: one backend
    tickers = Tickers.of(cloud)  # this replica's leases on the cluster-wide jobs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = cloud.settings
        # cluster-wide jobs: on one replica at a time, by lease in the metadata store
        lease = tickers.leased
        rollouts = settings.rollout_tick_s  # advances active rollouts
        loops.spawn(
            "rollout-ticker", lease("rollout", lambda: rollout_step(cloud)), first_pause_s=rollouts
        )
        retraining = settings.retraining_tick_s  # retrains on drift
        loops.spawn(
            "retraining-ticker",
            lease("retraining", lambda: retraining_step(cloud)),
            first_pause_s=retraining,
        )
        # telemetry and alerts (issue 12): detectors, notifications, downsampling
        evaluate = settings.alert_eval_s
        loops.spawn(
            "alert-evaluator",
            lease("alert-evaluation", lambda: alert_step(cloud, notifier)),
            first_pause_s=evaluate,
        )
        loops.spawn("alert-notifier", notifier.step)
        compact = settings.telemetry_compact_s
        loops.spawn(
            "telemetry-compactor",
            lease("telemetry-compaction", lambda: compact_step(cloud)),
            first_pause_s=compact,
        )
        grpc = await _start_grpc(cloud, backend)
        # remote tiers (issue 13.5): their configurations and readiness
        loops.spawn("remote-tiers", lambda: remote_tier_step(cloud, remote))
        yield
        if grpc is not None:
            await grpc.stop()
        await loops.stop()
        await asyncio.to_thread(tickers.release_all)  # another replica need not wait the TTL
        await remote.close()
        await notifier.stop()
        cloud.close()

    app = FastInferApp(
        title="hybridai cloud",
        version=__version__,
        description="Control plane: fleet, model registry, desired state, sync, lake, training, "
        "and Open Inference Protocol v2 inference.",
        lifespan=lifespan,
        dependencies=[Depends(_identified)],
        docs_url=None,  # served from local assets with the dashboard: no CDN
        redoc_url=None,
    )
    app.state.cloud = cloud
    app.state.loops = loops
    app.state.tickers = tickers
    app.state.notifier = notifier
    app.state.remote_tiers = remote
    # v2 infer: this app's middleware, the access check of the v2 routes, then the backend
    app.serve_infer_from(backend, admit=InferAccess(cloud).admit)
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limits(cloud.settings))
    app.add_middleware(AuditMiddleware, sessions=cloud.sessions)  # outside: sees 413s too
    # outermost: traces, logs and counts every request, the refused ones too (GET /metrics)
    app.add_middleware(RequestLogMiddleware, observe=cloud.metrics.observe_request)
    if cloud.settings.trusted_proxies:  # behind nginx: the device and address it vouches for
        app.add_middleware(ProxiedTls, trusted=cloud.settings.trusted_proxies)
    cloud.metrics.watch(cloud.sessions, cloud.engine, loops)
    install_error_handlers(app)
    app.add_exception_handler(BlobStorageError, _blob_store_failed)
    for router in (*ROUTERS, health.router, metrics.router):
        app.include_router(router)
    app.include_router(v2_router(backend), dependencies=[Depends(_v2_access)])
    dashboard.install(app)  # /ui, /docs, /redoc
    return app
