"""The compliance report: the running configuration checked against the platform's controls.

Each control is one small function ``(Cloud, Session, now) -> (status, detail)`` registered in
``CONTROLS``; adding a control is adding a function. A control whose data source does not exist
(a table or module not there yet) answers "unknown" with the reason, never a guess.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.context import Cloud
from hybridai.cloud.people import bootstrap
from hybridai.link.signing import SignatureInvalid, public_key_text, verify_artifact
from hybridai.protocol.compliance import ComplianceReport, ControlResult, ControlStatus
from hybridai.storage import tables
from hybridai.storage.tables import DataPolicyRow, DeploymentRow, DeviceRow, ModelArtifactRow

Outcome = tuple[ControlStatus, str]
Check = Callable[[Cloud, Session, float], Outcome]
CONTROLS: list[tuple[str, str, Check]] = []
PRIVILEGED_ROLES = ("admin", "operator")
_PROBE_TIMEOUT_S = 3.0


def control(name: str, title: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        CONTROLS.append((name, title, check))
        return check

    return register


def _names(items: list[str], most: int = 8) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def probe_tls12(host: str, port: int) -> Outcome:
    """Whether ``host:port`` refuses plain HTTP and a TLS 1.2 handshake (TLS 1.3 only)."""
    try:
        raw = socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S)
    except OSError as exc:
        return "unknown", f"cannot reach the cloud's own listener {host}:{port}: {exc}"
    with raw:
        try:
            raw.sendall(b"GET /v2/health/live HTTP/1.0\r\nHost: probe\r\n\r\n")
            first = raw.recv(5)
        except OSError:  # reset: a TLS listener refusing the plain request
            first = b""
    if first.startswith(b"HTTP/"):
        return "fail", f"{host}:{port} serves plain HTTP: turn TLS on (TLS 1.3, mTLS)"
    try:
        answer = _answer_to_tls12_hello(host, port)
    except OSError as exc:
        return "unknown", f"the TLS 1.2 probe could not complete: {exc}"
    if answer[:1] == b"\x16":  # a handshake record: the server answered with a ServerHello
        return "fail", f"{host}:{port} negotiates TLS 1.2: allow TLS 1.3 only"
    if answer[:1] in (b"\x15", b""):  # an alert, or the connection closed
        return "pass", f"{host}:{port} refuses TLS 1.2 and plain HTTP; TLS 1.3 only"
    return "unknown", f"unexpected answer to a TLS 1.2 ClientHello: {answer!r}"


def _answer_to_tls12_hello(host: str, port: int) -> bytes:
    """Send a ClientHello offering at most TLS 1.2 and return the first bytes answered.

    The hello is built by Python's own TLS stack (through memory buffers) and only the server's
    first record is read, so the answer tells whether TLS 1.2 would be negotiated, whatever the
    server later thinks of the (absent) client certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a probe of protocol versions, not of identity
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    hello_maker = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        hello_maker.do_handshake()
    with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as raw:
        raw.sendall(outgoing.read())
        try:
            return raw.recv(5)
        except ConnectionResetError:
            return b""


@control("tls_version", "Cloud listener accepts TLS 1.3 only")
def tls_version(cloud: Cloud, session: Session, now: float) -> Outcome:
    host = cloud.settings.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    return probe_tls12(host, cloud.settings.port)


@control("mfa_privileged", "Privileged users (admin, operator) have MFA")
def mfa_privileged(cloud: Cloud, session: Session, now: float) -> Outcome:
    users: Any = getattr(tables, "UserRow", None)
    if users is None or not hasattr(users, "mfa_enabled"):
        return "unknown", "not available: this cloud has no user accounts with MFA yet"
    rows = session.scalars(select(users).where(users.role.in_(PRIVILEGED_ROLES))).all()
    active = [u for u in rows if not getattr(u, "disabled", False)]
    without = sorted(u.name for u in active if not u.mfa_enabled)
    if without:
        return "fail", f"{len(without)} privileged user(s) without MFA: {_names(without)}"
    return "pass", f"{len(active)} active privileged user(s), all with MFA"


@control("bootstrap_token", "The bootstrap admin token is revoked once an admin has MFA")
def bootstrap_token(cloud: Cloud, session: Session, now: float) -> Outcome:
    if not bootstrap.active(session):
        return "pass", "the bootstrap admin token is revoked"
    admins = bootstrap.mfa_admins(session)
    if admins:
        return "fail", (
            f"the bootstrap admin token (DATA_DIR/admin.token, no MFA) is still valid although "
            f"{len(admins)} admin(s) with MFA exist ({_names(admins)}): revoke it with "
            "`hybridai token revoke-bootstrap`"
        )
    return "pass", (
        "the bootstrap admin token is valid and still needed: no admin has MFA yet (revoke it "
        "with `hybridai token revoke-bootstrap` once one has)"
    )


@control("audit_chain", "Audit log hash chain is intact")
def audit_chain(cloud: Cloud, session: Session, now: float) -> Outcome:
    try:
        from hybridai.governance import audit
    except ImportError:
        return "unknown", "not available: this cloud has no audit log yet"
    result = audit.verify(session)
    if result.ok:
        return "pass", f"{result.entries} entries, chain intact"
    problems = [p.message for p in result.problems]
    return "fail", f"{len(problems)} problem(s): {_names(problems, 3)}"


@control("certificates_expiry", "No device certificate is near expiry")
def certificates_expiry(cloud: Cloud, session: Session, now: float) -> Outcome:
    certs: Any = getattr(tables, "DeviceCertificateRow", None)
    if certs is None:
        return "unknown", "not available: this cloud issues no device certificates yet"
    lifetime = float(getattr(cloud.settings, "device_cert_lifetime_s", 86400.0))
    window = lifetime / 6  # edges renew with a third left: half of that gone means trouble
    newest: dict[str, float] = {}
    for row in session.scalars(select(certs).where(certs.revoked_at.is_(None))):
        newest[row.device_id] = max(newest.get(row.device_id, 0.0), row.not_after)
    active = {d.device_id for d in session.scalars(select(DeviceRow)) if not d.revoked}
    near = sorted(d for d, until in newest.items() if d in active and until - now < window)
    if near:
        return "fail", (
            f"{len(near)} device(s) whose newest certificate expires within "
            f"{window / 3600:.1f} h (renewal failing?): {_names(near)}"
        )
    return "pass", f"{len(newest)} device(s) with certificates valid beyond {window / 3600:.1f} h"


@control("devices_seen", "Every active device reported recently")
def devices_seen(cloud: Cloud, session: Session, now: float) -> Outcome:
    limit = cloud.settings.stale_device_s
    active = [d for d in session.scalars(select(DeviceRow)) if not d.revoked]
    stale = sorted(d.device_id for d in active if d.last_seen is None or now - d.last_seen > limit)
    if stale:
        return "fail", f"{len(stale)} device(s) not seen for over {limit:.0f} s: {_names(stale)}"
    return "pass", f"{len(active)} active device(s), all seen within {limit:.0f} s"


@control("policies_present", "Every lake stream has a data policy")
def policies_present(cloud: Cloud, session: Session, now: float) -> Outcome:
    try:
        streams = set(cloud.lake.streams())
    except NotImplementedError as exc:
        return "unknown", f"cannot list the lake's streams: {exc}"
    declared = set(session.scalars(select(DataPolicyRow.stream)))
    missing = sorted(streams - declared)
    if missing:
        return "fail", f"stream(s) without a policy: {_names(missing)} (`hybridai policy set`)"
    return "pass", f"{len(streams)} stream(s), each with a policy"


@control("models_signed", "Deployed models are signed under the cloud's key")
def models_signed(cloud: Cloud, session: Session, now: float) -> Outcome:
    if cloud.signing_key is None:
        return "fail", "the cloud has no signing key: artifacts cannot be signed"
    key = public_key_text(cloud.signing_key)
    bad: list[str] = []
    checked = 0
    for deployment in session.scalars(select(DeploymentRow)):
        for art in session.scalars(
            select(ModelArtifactRow).where(
                ModelArtifactRow.name == deployment.name,
                ModelArtifactRow.version == deployment.version,
            )
        ):
            checked += 1
            try:
                verify_artifact(
                    key, art.signature, art.name, str(art.version), art.variant, art.sha256
                )
            except SignatureInvalid:
                bad.append(f"{art.name} v{art.version} ({art.variant})")
    if bad:
        return "fail", f"unsigned or badly signed: {_names(bad)}; register them again"
    return "pass", f"{checked} deployed artifact(s), all signed"


def report(cloud: Cloud, now: float) -> ComplianceReport:
    """Run every control; one that crashes reports "unknown" with its error."""
    results: list[ControlResult] = []
    for name, title, check in CONTROLS:
        try:
            with cloud.session() as session:
                status, detail = check(cloud, session, now)
        except Exception as exc:  # a broken data source must not hide the other controls
            status, detail = "unknown", f"the check failed: {type(exc).__name__}: {exc}"
        results.append(ControlResult(control=name, title=title, status=status, detail=detail))
    passed = all(r.status != "fail" for r in results)
    return ComplianceReport(generated_at=now, passed=passed, controls=results)
