"""Device certificates: issue from a CSR, renew, revoke, and check on every request.

The handshake proves that a certificate chains to the platform CA and is in date; this module
adds what a handshake cannot know: that the cloud issued that serial to that device, for the
public key it carries now (recorded at enrollment and each renewal: a serial is public, a key
is proof), and that neither the certificate nor the device has been revoked since. It runs on
every request, so a revocation takes effect on the device's next call, whatever connection it
reuses.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import update
from sqlalchemy.orm import Session

from hybridai.link import pki
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.storage.tables import DeviceCertificateRow, DeviceRow


@dataclass(frozen=True)
class DeviceAuthority:
    """The platform CA, loaded once per process, and the lifetime of what it signs."""

    ca: x509.Certificate
    key: pki.PrivateKey
    lifetime_s: float

    @property
    def ca_pem(self) -> str:
        return pki.cert_pem(self.ca)

    @classmethod
    def load(cls, root: Path, passphrase: str | None, lifetime_s: float) -> DeviceAuthority:
        ca, key = pki.CloudPki(root).load_ca(passphrase)
        return cls(ca, key, lifetime_s)


def check_csr(csr_pem: str, device_id: str) -> None:
    """Refuse a malformed CSR (400) or one naming another device (403), before any state changes."""
    try:
        named = pki.csr_device_id(csr_pem)
    except pki.PkiError as exc:
        raise ApiError(
            400,
            ErrorCode.INVALID_CSR,
            f"{exc}: let the edge agent make the CSR (it names the device in CN and SAN URI)",
        ) from None
    if named != device_id:
        raise ApiError(
            403,
            ErrorCode.CSR_DEVICE_MISMATCH,
            f"the CSR names device {named!r} but the request is for {device_id!r}: a device "
            "may only ask for a certificate in its own name",
        )


def issue(
    session: Session, authority: DeviceAuthority, csr_pem: str, device_id: str, now: float
) -> x509.Certificate:
    """Sign the CSR and record the serial (the caller commits with its own unit of work)."""
    check_csr(csr_pem, device_id)
    cert = pki.sign_device(
        authority.ca, authority.key, csr_pem, device_id, now, authority.lifetime_s
    )
    session.add(
        DeviceCertificateRow(
            serial=pki.serial_hex(cert),
            device_id=device_id,
            not_before=pki.not_before(cert),
            not_after=pki.not_after(cert),
            issued_at=now,
            revoked_at=None,
            public_key_sha256=pki.public_key_sha256(cert),
        )
    )
    return cert


def revoke_all(session: Session, device_id: str, now: float) -> int:
    """Revoke every live certificate of the device (re-enrollment, revocation)."""
    result = session.execute(
        update(DeviceCertificateRow)
        .where(
            DeviceCertificateRow.device_id == device_id,
            DeviceCertificateRow.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _rejected(reason: str, device_id: str = "DEVICE") -> ApiError:
    return ApiError(
        401,
        ErrorCode.CERTIFICATE_REJECTED,
        f"device certificate {reason}: enroll the device again with a new token from "
        f"`hybridai fleet enroll-token SITE/{device_id}`",
    )


def authenticate(session: Session, cert: x509.Certificate, now: float) -> str:
    """The device a verified certificate belongs to, if the cloud still stands behind it."""
    try:
        device_id = pki.device_id_of(cert)
    except pki.PkiError as exc:
        raise _rejected(str(exc)) from None
    row = session.get(DeviceCertificateRow, pki.serial_hex(cert))
    if row is None or row.device_id != device_id:
        raise _rejected("was not issued by this cloud for this device", device_id)
    key = pki.public_key_sha256(cert)
    if row.public_key_sha256 is None:  # issued before keys were recorded: bind on first use
        row.public_key_sha256 = key
        session.commit()
    elif not hmac.compare_digest(row.public_key_sha256, key):
        raise _rejected(
            "carries another public key than the one the cloud issued it for", device_id
        )
    if row.revoked_at is not None:
        raise _rejected("has been revoked", device_id)
    if row.not_after <= now:
        raise _rejected("has expired", device_id)
    device = session.get(DeviceRow, device_id)
    if device is None or device.revoked:
        raise _rejected("belongs to a revoked or unknown device", device_id)
    return device_id
