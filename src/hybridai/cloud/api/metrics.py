"""``GET /metrics``: the cloud's Prometheus metrics, for people and tokens allowed to read.

Behind the same authentication as the API (an API token with the ``read`` action: give
Prometheus one in ``authorization.credentials_file``), so a scrape shows nothing to strangers
(device ids are label values). See docs/operations.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Requests, sync, enrollments, certificates, rollouts, training, pool, loops."""
    await run_in_threadpool(require, request, "read")
    body = await run_in_threadpool(cloud_of(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
