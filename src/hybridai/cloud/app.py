"""The cloud control plane as one FastAPI app: thin routes over the cloud's services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hybridai import __version__
from hybridai.cloud import api_fleet, api_lake, api_models, api_sync, api_training
from hybridai.cloud.context import Cloud
from hybridai.cloud.inference import CloudBackend
from hybridai.serving.errors import install_error_handlers
from hybridai.serving.v2_routes import v2_router


def create_app(cloud: Cloud) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        cloud.close()

    app = FastAPI(
        title="hybridai cloud",
        version=__version__,
        description="Control plane: fleet, model registry, desired state, sync, lake, training, "
        "and Open Inference Protocol v2 inference.",
        lifespan=lifespan,
    )
    app.state.cloud = cloud
    install_error_handlers(app)
    for module in (api_fleet, api_sync, api_models, api_training, api_lake):
        app.include_router(module.router)
    app.include_router(v2_router(CloudBackend(cloud)))
    return app
