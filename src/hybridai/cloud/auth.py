"""Who is calling: people and automation by API token, devices by their credential.

Identity comes from a secret the caller proves, never from a header a client can set freely.
Device calls may touch only the device's own resources.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from hybridai.cloud import fleet
from hybridai.cloud.context import Cloud
from hybridai.protocol.errors import ApiError, ErrorCode

ROLES_THAT_MAY = {
    "read": {"admin", "operator", "data-scientist", "viewer"},
    "operate": {"admin", "operator"},
    "train": {"admin", "data-scientist"},
    "admin": {"admin"},
}


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" or "device"
    name: str
    role: str


def cloud_of(request: Request) -> Cloud:
    cloud: Cloud = request.app.state.cloud
    return cloud


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            ErrorCode.UNAUTHENTICATED,
            "missing credentials: send 'Authorization: Bearer TOKEN' (an API token for people "
            "and automation, the device credential for edge agents)",
        )
    return token.strip()


def principal(request: Request) -> Principal:
    token = _bearer(request)
    cloud = cloud_of(request)
    with cloud.session() as session:
        user = fleet.authenticate_api_token(session, token)
        if user is not None:
            return Principal("user", user[0], user[1])
        device = fleet.authenticate_device(session, token)
    if device is not None:
        return Principal("device", device, "device")
    raise ApiError(
        401,
        ErrorCode.UNAUTHENTICATED,
        "unknown, revoked or expired credentials: check the token, or re-enroll the device",
    )


def require(request: Request, action: str) -> Principal:
    """A person or automation allowed to ``action`` (see ROLES_THAT_MAY)."""
    who = principal(request)
    if who.kind != "user" or who.role not in ROLES_THAT_MAY[action]:
        raise ApiError(
            403,
            ErrorCode.FORBIDDEN,
            f"{who.kind} '{who.name}' (role {who.role}) may not {action}; roles allowed: "
            f"{', '.join(sorted(ROLES_THAT_MAY[action]))}",
        )
    return who


def require_device(request: Request, device_id: str) -> Principal:
    """The device itself (or an operator) acting on ``device_id``'s resources."""
    who = principal(request)
    if who.kind == "device" and who.name == device_id:
        return who
    if who.kind == "user" and who.role in ROLES_THAT_MAY["operate"]:
        return who
    raise ApiError(
        403,
        ErrorCode.FORBIDDEN,
        f"{who.kind} '{who.name}' may not act for device '{device_id}': a device reaches only "
        "its own desired state, data and status",
    )
