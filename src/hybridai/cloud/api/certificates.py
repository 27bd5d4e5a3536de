"""Certificate routes: renewal by the device itself (over mTLS) and revocation by operators."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from hybridai.cloud.auth import cloud_of, require, require_device
from hybridai.cloud.devices import fleet
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import CertificateRequest, CertificateResponse, Device

router = APIRouter(prefix="/api/v1", tags=["certificates"])


@router.post("/devices/{device_id}/certificate")
def renew_certificate(
    device_id: str, body: CertificateRequest, request: Request
) -> CertificateResponse:
    """A fresh certificate for the calling device; only the device itself may ask."""
    who = require_device(request, device_id)
    if who.kind != "device":
        raise ApiError(
            403,
            ErrorCode.FORBIDDEN,
            "only the device itself renews its certificate (its key never leaves it); "
            "operators re-enroll a device with `hybridai fleet enroll-token`",
        )
    cloud = cloud_of(request)
    authority = cloud.device_authority()
    with cloud.session() as session:
        pem = fleet.renew_certificate(session, device_id, body.csr, time.time(), authority)
    return CertificateResponse(certificate=pem, ca_certificate=authority.ca_pem)


@router.post("/devices/{device_id}/revoke")
def revoke_device(device_id: str, request: Request) -> Device:
    """Revoke the device and every certificate it holds; its next request is refused."""
    require(request, "operate")
    with cloud_of(request).session() as session:
        return fleet.revoke_device(session, device_id, time.time())
