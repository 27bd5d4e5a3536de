"""Who is calling: people and automation by API token, devices by their certificate.

Identity comes from a secret the caller proves, never from a header a client can set freely.
A device's identity is the client certificate its TLS handshake verified, handed over by the
server as the ASGI TLS extension; the cloud checks it on every request (its serial issued
here for the key it carries, unexpired, unrevoked). Device calls may touch only the device's
own resources.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from cryptography import x509
from fastapi import Request

from hybridai.cloud.context import Cloud
from hybridai.cloud.devices import certificates
from hybridai.cloud.people import users
from hybridai.governance import rbac
from hybridai.link import pki
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.serving.path_names import check_path_names

# The one table of who may do what lives in governance/rbac.py (docs/rbac.md is made from it).
ROLES_THAT_MAY = rbac.ROLES_THAT_MAY


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" or "device"
    name: str
    role: str
    scope: str = "full"  # "mfa-enroll": a privileged user who must enroll MFA first
    person: users.Person | None = None  # for people: how they authenticated (logout needs it)


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
            "and automation; edge agents present their device certificate over mTLS)",
        )
    return token.strip()


def principal(request: Request) -> Principal:
    """Who calls; also kept on ``request.state.principal`` for the audit log."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    found = _principal(request)
    request.state.principal = found
    return found


# A device's own resources (desired state, status, batches, certificate): where an edge calls.
_DEVICE_ROUTE = re.compile(r"^/api/v1/devices/[^/]+/.+")


def _client_certificate(request: Request) -> x509.Certificate | None:
    """The verified client certificate of this request's connection, if it presented one."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain or tls.get("client_cert_error") is not None:
        return None
    return pki.load_cert(chain[0])


def _device_principal(request: Request) -> Principal | None:
    """The device behind the request's verified certificate; None without one."""
    cert = _client_certificate(request)
    if cert is None:
        return None
    try:
        with cloud_of(request).session() as session:
            device_id = certificates.authenticate(session, cert, time.time())
    except ApiError:  # audited (401): name whom the certificate claimed to be
        request.state.audit_actor = f"certificate {cert.subject.rfc4514_string()}"
        raise
    return Principal("device", device_id, "device")


def _principal(request: Request) -> Principal:
    device = _device_principal(request)
    if device is not None:
        return device
    if "authorization" not in request.headers and _DEVICE_ROUTE.match(request.url.path):
        raise ApiError(
            401,
            ErrorCode.CERTIFICATE_REQUIRED,
            "device routes need the device's certificate: connect over mTLS with the "
            "certificate the cloud issued to the device (operators: send an API token)",
        )
    token = _bearer(request)
    cloud = cloud_of(request)
    with cloud.session() as session:
        keys = users.token_keys(cloud.settings.data_dir)
        person = users.authenticate(session, keys, token, time.time())
        if person is not None:
            return Principal("user", person.name, person.role, person.scope, person)
    raise ApiError(
        401,
        ErrorCode.UNAUTHENTICATED,
        "unknown, revoked or expired credentials: check the token (devices authenticate with "
        "their certificate over mTLS, not a bearer token)",
    )


def require(request: Request, action: str) -> Principal:
    """A person or automation allowed to ``action`` (see ROLES_THAT_MAY)."""
    who = principal(request)
    if who.kind == "user" and who.scope != "full" and action != "account":
        raise ApiError(
            403,
            ErrorCode.MFA_REQUIRED,
            f"user '{who.name}' (role {who.role}) must enroll MFA before anything else: run "
            f"`hybridai user mfa-enroll {who.name}`, then `hybridai login` with --code",
        )
    if who.kind != "user" or not rbac.may(who.role, action):
        raise ApiError(
            403,
            ErrorCode.FORBIDDEN,
            f"{who.kind} '{who.name}' (role {who.role}) may not {action}; roles allowed: "
            f"{', '.join(sorted(ROLES_THAT_MAY[action]))}",
        )
    check_path_names(request)
    return who


def require_user_or_device(request: Request, action: str) -> Principal:
    """Any enrolled device, or a person allowed to ``action`` (cloud inference, for one)."""
    who = principal(request)
    if who.kind != "device":
        return require(request, action)
    check_path_names(request)
    return who


def require_device(request: Request, device_id: str) -> Principal:
    """The device itself (or an operator) acting on ``device_id``'s resources."""
    who = principal(request)
    if who.kind == "device" and who.name == device_id:
        check_path_names(request)
        return who
    if who.kind == "user" and who.scope == "full" and rbac.may(who.role, "operate"):
        check_path_names(request)
        return who
    raise ApiError(
        403,
        ErrorCode.FORBIDDEN,
        f"{who.kind} '{who.name}' may not act for device '{device_id}': a device reaches only "
        "its own desired state, data and status",
    )
