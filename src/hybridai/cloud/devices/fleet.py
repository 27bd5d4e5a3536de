"""Fleet registry: enrollment tokens, device enrollment and certificates, status, API tokens.

Service functions take the session and the current time explicitly and commit their own unit
of work; failures raise ``ApiError`` with a stable code and a message that says what to do.
Only hashes of secrets are stored: a token or credential is shown exactly once, when minted.
"""

from __future__ import annotations

import re
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hybridai.cloud.devices import certificates
from hybridai.cloud.devices.certificates import DeviceAuthority
from hybridai.cloud.operations import telemetry
from hybridai.cloud.people.secrets import (
    ADMIN_PREFIX,
    API_PREFIX,
    ENROLLMENT_PREFIX,
    hash_token,
    new_token,
    token_matches,
)
from hybridai.link import pki
from hybridai.observability.telemetry import report_points
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import (
    DEVICE_ID_PATTERN,
    MAX_TAGS,
    Device,
    EnrollmentToken,
    EnrollRequest,
    EnrollResponse,
    StatusReport,
    TagChange,
    check_tags,
)
from hybridai.storage.tables import ApiTokenRow, DeviceRow, EnrollmentTokenRow

_ID = re.compile(DEVICE_ID_PATTERN)


def _checked_tags(tags: dict[str, str]) -> dict[str, str]:
    try:
        check_tags(tags)
    except ValueError as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, str(exc)) from None
    if len(tags) > MAX_TAGS:
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"a device carries at most {MAX_TAGS} tags, this would give it {len(tags)}: "
            "remove some with `hybridai fleet tag DEVICE --remove KEY`",
        )
    return dict(sorted(tags.items()))


def create_enrollment_token(
    session: Session,
    site: str,
    device_id: str,
    ttl_s: float,
    now: float,
    tags: dict[str, str] | None = None,
) -> EnrollmentToken:
    """Mint a one-time token that lets exactly ``device_id`` join ``site`` until it expires.

    ``tags`` are given to the device when it enrolls with the token, over any it declares.
    """
    for label, value in (("site", site), ("device_id", device_id)):
        if not _ID.fullmatch(value):
            raise ApiError(
                400,
                ErrorCode.INVALID_INPUT,
                f"{label} {value!r} is not valid: use 1-63 lowercase letters, digits, '.', '_' "
                "or '-', starting with a letter or digit",
            )
    if ttl_s <= 0:
        raise ApiError(400, ErrorCode.INVALID_INPUT, f"ttl_s must be positive, got {ttl_s}")
    tags = _checked_tags(tags or {})
    token = new_token(ENROLLMENT_PREFIX)
    expires_at = now + ttl_s
    session.add(
        EnrollmentTokenRow(
            token_hash=hash_token(token),
            site=site,
            device_id=device_id,
            expires_at=expires_at,
            tags=tags,
        )
    )
    session.commit()
    return EnrollmentToken(
        token=token, site=site, device_id=device_id, expires_at=expires_at, tags=tags
    )


def _bad_token(reason: str, site: str = "SITE", device_id: str = "DEVICE") -> ApiError:
    return ApiError(
        401,
        ErrorCode.BAD_ENROLLMENT_TOKEN,
        f"enrollment token {reason}: ask an operator for a new one with "
        f"`hybridai fleet enroll-token {site}/{device_id}`",
    )


def enroll(
    session: Session, request: EnrollRequest, now: float, authority: DeviceAuthority
) -> EnrollResponse:
    """Spend a valid enrollment token and (re-)enroll the device with a certificate for its CSR.

    Re-enrolling revokes the device's earlier certificates and lifts a device revocation: an
    operator-issued token is the deliberate way back into the fleet. A bad CSR is refused
    before the token is spent. Tags: those the device already had, then those it declares,
    then the token's (an operator's word wins).
    """
    token_hash = hash_token(request.token)
    token = session.get(EnrollmentTokenRow, token_hash)
    if token is None:
        raise _bad_token("is unknown", device_id=request.device_id)
    if token.device_id != request.device_id:
        raise _bad_token(
            f"was issued for device {token.device_id!r}, not {request.device_id!r}",
            token.site,
            request.device_id,
        )
    if token.used_at is not None:
        raise _bad_token("was already used", token.site, token.device_id)
    if token.expires_at <= now:
        raise _bad_token("has expired", token.site, token.device_id)
    certificates.check_csr(request.csr, request.device_id)
    device = session.get(DeviceRow, request.device_id)
    held = dict(device.tags or {}) if device is not None else {}
    tags = _checked_tags({**held, **request.tags, **(token.tags or {})})
    # Conditional update: of two concurrent enrollments with one token, exactly one wins.
    spent = cast(
        "CursorResult[Any]",
        session.execute(
            update(EnrollmentTokenRow)
            .where(
                EnrollmentTokenRow.token_hash == token_hash,
                EnrollmentTokenRow.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    if spent.rowcount != 1:
        session.rollback()
        raise _bad_token("was already used", token.site, token.device_id)

    capabilities = request.capabilities.model_dump(mode="json")
    if device is None:
        session.add(
            DeviceRow(
                device_id=request.device_id,
                site=token.site,
                kind=request.kind,
                capabilities=capabilities,
                enrolled_at=now,
                revoked=False,
                tags=tags,
            )
        )
    else:
        device.site = token.site
        device.kind = request.kind
        device.capabilities = capabilities
        device.enrolled_at = now
        device.revoked = False
        device.tags = tags
    try:
        session.flush()
        certificates.revoke_all(session, request.device_id, now)
        cert = certificates.issue(session, authority, request.csr, request.device_id, now)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"device {request.device_id!r} was enrolled concurrently; retry with a new token",
        ) from None
    return EnrollResponse(
        device_id=request.device_id,
        site=token.site,
        certificate=pki.cert_pem(cert),
        ca_certificate=authority.ca_pem,
    )


def renew_certificate(
    session: Session, device_id: str, csr_pem: str, now: float, authority: DeviceAuthority
) -> str:
    """A new certificate for an authenticated device; the current one stays valid until expiry."""
    _device_row(session, device_id)
    cert = certificates.issue(session, authority, csr_pem, device_id, now)
    session.commit()
    return pki.cert_pem(cert)


def _device_row(session: Session, device_id: str) -> DeviceRow:
    device = session.get(DeviceRow, device_id)
    if device is None:
        raise ApiError(
            404,
            ErrorCode.UNKNOWN_DEVICE,
            f"device {device_id!r} is not enrolled: create a token with "
            f"`hybridai fleet enroll-token SITE/{device_id}` and enroll it",
        )
    return device


def _to_device(row: DeviceRow) -> Device:
    return Device.model_validate(
        {
            "device_id": row.device_id,
            "site": row.site,
            "kind": row.kind,
            "capabilities": row.capabilities,
            "enrolled_at": row.enrolled_at,
            "last_seen": row.last_seen,
            "revoked": row.revoked,
            "status": row.status,
            "tags": row.tags or {},
        }
    )


def _previous_report(status: dict[str, Any] | None) -> StatusReport | None:
    if not status:
        return None
    try:
        return StatusReport.model_validate(status)
    except ValueError:  # stored by an older cloud: no rates from this pair
        return None


def record_status(session: Session, report: StatusReport, now: float) -> None:
    """Keep the device's latest report; ``last_seen`` is the cloud's clock, not the edge's.

    Its telemetry points (rates against the previous report) join the time series in the
    same transaction.
    """
    device = _device_row(session, report.device_id)
    points = report_points(report, _previous_report(device.status))
    telemetry.record(session, report.device_id, points, now)
    device.status = report.model_dump(mode="json")
    device.last_seen = now
    session.commit()


def list_devices(session: Session) -> list[Device]:
    rows = session.scalars(select(DeviceRow).order_by(DeviceRow.site, DeviceRow.device_id))
    return [_to_device(row) for row in rows]


def get_device(session: Session, device_id: str) -> Device:
    return _to_device(_device_row(session, device_id))


def change_tags(session: Session, device_id: str, change: TagChange) -> Device:
    """Remove, then add, tags on a device; the result holds at most ``MAX_TAGS`` tags.

    Removing a tag the device does not carry is no error (the wanted state is reached).
    """
    device = _device_row(session, device_id)
    tags = {k: v for k, v in (device.tags or {}).items() if k not in set(change.remove)}
    device.tags = _checked_tags({**tags, **change.add})
    session.commit()
    return _to_device(device)


def revoke_device(session: Session, device_id: str, now: float) -> Device:
    """Revoke the device and its certificates (checked on every request, so its next call fails).

    Enrolling again with a new token undoes it.
    """
    device = _device_row(session, device_id)
    device.revoked = True
    certificates.revoke_all(session, device_id, now)
    session.commit()
    return _to_device(device)


def create_api_token(session: Session, name: str, role: str, now: float) -> str:
    """Mint an API token for a person or program; the token is returned once, never stored."""
    if not name or not role:
        raise ApiError(400, ErrorCode.INVALID_INPUT, "an API token needs a name and a role")
    token = new_token(ADMIN_PREFIX if role == "admin" else API_PREFIX)
    session.add(ApiTokenRow(token_hash=hash_token(token), name=name, role=role, created_at=now))
    session.commit()
    return token


def authenticate_api_token(session: Session, token: str) -> tuple[str, str] | None:
    """``(name, role)`` of a valid token, or None if it is unknown or revoked."""
    row = session.get(ApiTokenRow, hash_token(token))
    if row is None or row.revoked or not token_matches(token, row.token_hash):
        return None
    return row.name, row.role
