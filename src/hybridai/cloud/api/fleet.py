"""Fleet routes: enrollment, the device registry, status reports and desired state."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hybridai.cloud import policies
from hybridai.cloud.auth import cloud_of, require, require_device
from hybridai.cloud.context import Cloud
from hybridai.cloud.data import quarantine, stream_schemas
from hybridai.cloud.devices import device_settings, fleet
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.devices.site_keys import access_for
from hybridai.cloud.devices.site_peers import site_peers
from hybridai.cloud.operations import healing
from hybridai.cloud.operations.loops import on_report
from hybridai.cloud.people import users
from hybridai.link.signing import public_key_text
from hybridai.protocol.edge_settings import DeviceSettings
from hybridai.protocol.errors import ApiError
from hybridai.protocol.fleet import (
    DesiredState,
    Device,
    EnrollmentToken,
    EnrollmentTokenRequest,
    EnrollRequest,
    EnrollResponse,
    StatusReport,
    TagChange,
)
from hybridai.storage.tables import DeviceRow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["fleet"])
MAX_WAIT_S = 30.0


@router.post("/enrollment-tokens", status_code=201)
def create_enrollment_token(body: EnrollmentTokenRequest, request: Request) -> EnrollmentToken:
    require(request, "operate")
    with cloud_of(request).session() as session:
        return fleet.create_enrollment_token(
            session, body.site, body.device_id, body.ttl_s, time.time(), body.tags
        )


@router.post("/enroll")
def enroll(body: EnrollRequest, request: Request) -> EnrollResponse:
    cloud = cloud_of(request)
    try:
        with cloud.session() as session:
            enrolled = fleet.enroll(session, body, time.time(), cloud.device_authority())
    except ApiError:
        cloud.metrics.enrollments.labels("refused").inc()
        raise
    cloud.metrics.enrollments.labels("enrolled").inc()
    log.info("device %s enrolled at site %s", enrolled.device_id, enrolled.site)
    return enrolled


@router.get("/devices")
def list_devices(request: Request) -> list[Device]:
    require(request, "read")
    with cloud_of(request).session() as session:
        return quarantine.on_devices(session, fleet.list_devices(session))


@router.get("/devices/{device_id}")
def get_device(device_id: str, request: Request) -> Device:
    require_device(request, device_id)
    with cloud_of(request).session() as session:
        return quarantine.on_devices(session, [fleet.get_device(session, device_id)])[0]


@router.patch("/devices/{device_id}/tags")
def change_tags(device_id: str, body: TagChange, request: Request) -> Device:
    """Add or remove a device's tags (rollouts select devices by them)."""
    require(request, "operate")
    with cloud_of(request).session() as session:
        return fleet.change_tags(session, device_id, body)


@router.post("/devices/{device_id}/status", status_code=204)
def post_status(device_id: str, report: StatusReport, request: Request) -> Response:
    require_device(request, device_id)
    report = report.model_copy(update={"device_id": device_id})
    cloud, now = cloud_of(request), time.time()
    with cloud.session() as session:
        fleet.record_status(session, report, now)
    on_report(cloud, request.app.state.notifier, device_id, now)  # fixed-limit alerts
    return Response(status_code=204)


def _desired(request: Request, device_id: str) -> DesiredState:
    return device_desired(cloud_of(request), device_id)


def device_desired(cloud: Cloud, device_id: str) -> DesiredState:
    """What ``device_id`` should run now, with its merged settings and healing orders."""
    with cloud.session() as session:
        device = fleet.get_device(session, device_id)
        stale_s = max(3 * cloud.settings.heartbeat_interval_s, 10.0)
        peers = site_peers(session, device_id, time.time(), stale_s)
        orders, overlays = healing.orders_for(session, device_id)
        merged = device_settings.merged_for(
            session,
            session.get(DeviceRow, device_id),
            device_settings.defaults(cloud.settings),
            overlays,
        )
        settings = DeviceSettings.model_validate(
            {
                **merged.settings.model_dump(),
                "site_peers": peers,
                # The edge verifies admin access tokens offline with it (edge/admin.py).
                "token_public_key": users.token_keys(cloud.settings.data_dir).public_pem,
                "healing": orders,
            }
        )
        key = None if cloud.signing_key is None else public_key_text(cloud.signing_key)
        return desired_state(
            session,
            device_id,
            settings,
            key,
            policies.list_policies(session),
            stream_schemas.for_site(session, device.site),
            site_access=access_for(session, device.site, time.time()),
        )


@router.get("/devices/{device_id}/desired-state", response_model=DesiredState)
async def get_desired_state(device_id: str, request: Request, wait: float = 0.0) -> Response:
    """The device's desired state; with ``If-None-Match`` and ``wait``, a long-poll.

    Answers 304 when the generation still equals the ETag after ``wait`` seconds. Polling the
    store (not an in-process event) keeps this correct across several cloud replicas.
    """
    await run_in_threadpool(require_device, request, device_id)
    etag = request.headers.get("if-none-match", "").strip('"')
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_S)
    while True:
        desired = await run_in_threadpool(_desired, request, device_id)
        if desired.generation != etag:
            return Response(
                desired.model_dump_json(),
                media_type="application/json",
                headers={"ETag": f'"{desired.generation}"'},
            )
        if time.monotonic() >= deadline:
            return Response(status_code=304, headers={"ETag": f'"{desired.generation}"'})
        await asyncio.sleep(cloud_of(request).settings.long_poll_recheck_s)
