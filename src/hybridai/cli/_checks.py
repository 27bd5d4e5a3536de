"""Checks of a local install, each a verdict with the one thing to do about it.

``hybridai doctor`` runs them (``_doctor_edge``, ``_doctor_cloud``): like ``iotedge check``, a
check says pass, warn or fail, what it saw, and for anything but pass the fix in one sentence.
The checks here are the ones both roles share: ports, disk space, certificate files, and a
server's clock from one answer's ``Date`` header.
"""

from __future__ import annotations

import errno
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509

Verdict = Literal["pass", "warn", "fail"]
GIB = 1024**3
DISK_WARN_BYTES = 1 * GIB
DISK_FAIL_BYTES = 100 * 1024**2
SKEW_WARN_S = 5.0  # Date headers are stamped in whole seconds


@dataclass(frozen=True)
class Check:
    """One verdict: ``fix`` is empty exactly when it passed."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def passed(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def warned(name: str, detail: str, fix: str) -> Check:
    return Check(name, "warn", detail, fix)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, "fail", detail, fix)


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def left(seconds: float) -> str:
    """A duration for people: '3 days', '5.0 h', '12 min'."""
    if abs(seconds) >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if abs(seconds) >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens at ``host:port`` (a bind would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def disk(name: str, folder: Path, what: str) -> Check:
    """Free space where ``folder`` lives (its nearest existing parent when it is not there)."""
    where = folder
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = f"{free / GIB:.1f} GiB free at {where}"
    if free < DISK_FAIL_BYTES:
        return failed(name, detail, f"free space on the disk that holds {folder} ({what})")
    if free < DISK_WARN_BYTES:
        return warned(name, detail, f"free space soon: {what} grows on this disk")
    return passed(name, detail)


def load_certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def certificate(
    name: str,
    path: Path | None,
    now: float,
    *,
    missing_fix: str,
    renew_fix: str,
    warn_within_s: float,
) -> Check:
    """A certificate file: present, readable, and far enough from its end."""
    if path is None or not path.is_file():
        return failed(name, f"{path or 'no file'} is missing", missing_fix)
    try:
        cert = load_certificates(path)[0]
    except (OSError, ValueError):
        return failed(name, f"{path} holds no PEM certificate", missing_fix)
    start = cert.not_valid_before_utc.timestamp()
    end = cert.not_valid_after_utc.timestamp()
    if end <= now:
        return failed(name, f"{path} expired {utc(end)} ({left(now - end)} ago)", renew_fix)
    if start > now:
        return failed(
            name,
            f"{path} is valid only from {utc(start)}: this machine's clock is behind",
            "fix this machine's clock (NTP: `timedatectl set-ntp true`)",
        )
    if end - now < warn_within_s:
        return warned(name, f"{path} expires {utc(end)} (in {left(end - now)})", renew_fix)
    return passed(name, f"{path} valid until {utc(end)} ({left(end - now)} left)")


def clock_skew(name: str, skew_s: float, fail_s: float, whose: str) -> Check:
    """The local clock against a server's (positive: this machine is ahead)."""
    side = "ahead of" if skew_s > 0 else "behind"
    detail = f"{abs(skew_s):.1f} s {side} {whose}"
    fix = "turn on NTP on this machine (`timedatectl set-ntp true`, or check chrony/ntpd)"
    if abs(skew_s) > fail_s:
        return failed(name, detail, fix)
    if abs(skew_s) > SKEW_WARN_S:
        return warned(name, detail, fix)
    return passed(name, detail)


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.verdict == "fail" for c in checks) else 0
