"""Why the edge cannot talk to the cloud, in words that say what to do.

A failed call arrives as an exception chain (httpx over httpcore over ``ssl``/``socket``); this
module names the cause once per kind (``Problem.key``), so the agent can log each distinct
problem once instead of on every retry. When the cloud's certificate fails verification for a
time reason, ``probe`` asks the cloud (unverified, for diagnosis only) for its certificate's
validity window and its clock: if the cloud's own time lies inside that window, the fault is
this device's clock, and the message says "clock skew", not "expired".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from hybridai.edge.clock import NTP_FIX, ClockSkew, amount, describe_skew, server_time
from hybridai.protocol.errors import ApiError

log = logging.getLogger(__name__)

# OpenSSL X509_V_ERR_* codes
CERT_NOT_YET_VALID, CERT_HAS_EXPIRED = 9, 10
UNTRUSTED = frozenset({2, 18, 19, 20, 21})  # no issuer, self-signed, local issuer unknown
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64  # a --cloud URL by IP address the certificate does not carry
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Problem:
    key: str  # one per kind of problem: log once per key
    message: str  # what happened and what to do
    time_error: bool = False  # the cloud's certificate failed verification for a time reason


@dataclass(frozen=True)
class Probe:
    """What an unverified look at the cloud showed (for diagnosis, never for trust)."""

    sent: float
    received: float
    cloud_time: float | None
    not_before: float | None
    not_after: float | None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def diagnose(exc: BaseException, cloud_url: str) -> Problem:
    """The cause of a failed call to ``cloud_url``, with its fix."""
    parts = urlsplit(cloud_url)
    where = parts.netloc or cloud_url
    chain = _chain(exc)
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            code = cause.verify_code
            if code in (CERT_NOT_YET_VALID, CERT_HAS_EXPIRED):
                return Problem(
                    f"tls-time-{code}",
                    f"the cloud's certificate at {where} is outside its validity period by this "
                    f"device's clock: check this device's clock; {NTP_FIX}",
                    time_error=True,
                )
            if code in UNTRUSTED:
                return Problem(
                    "tls-untrusted",
                    f"the cloud's certificate at {where} is not signed by a CA this edge trusts: "
                    "start the edge with --ca-file naming the cloud's CA (the cloud's "
                    "DATA_DIR/pki/ca.crt)",
                )
            if code in (HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH):
                return Problem(
                    "tls-hostname",
                    f"the cloud's certificate does not name {parts.hostname}: use a --cloud URL "
                    "with a name the certificate carries, or add this name to the cloud's "
                    "HYBRIDAI_CLOUD_TLS_NAMES",
                )
            return Problem(
                f"tls-verify-{code}",
                f"the cloud's certificate at {where} does not verify ({cause.verify_message}): "
                "check --cloud and --ca-file",
            )
    for cause in chain:
        if isinstance(cause, ssl.SSLError):
            reason = (cause.reason or "").upper()
            if "WRONG_VERSION" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH" in reason:
                return Problem(
                    "tls-not-tls",
                    f"the server at {where} does not speak TLS: check the --cloud URL and port",
                )
            if "ALERT" in reason:
                return Problem(
                    f"tls-refused-{reason}",
                    f"the cloud at {where} refused this device's certificate ({cause.reason}): "
                    "re-enroll it with a new token (`hybridai fleet enroll-token SITE/DEVICE`)",
                )
        if isinstance(cause, socket.gaierror):
            return Problem(
                "dns",
                f"cannot resolve {parts.hostname}: check the --cloud URL and this device's DNS",
            )
        if isinstance(cause, ConnectionRefusedError):
            return Problem(
                "refused",
                f"nothing listens at {where}: check the --cloud URL and that the cloud is running",
            )
        if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
            return Problem(
                "timeout",
                f"the cloud at {where} did not answer in time: check the network path to it",
            )
    return Problem(f"other-{type(exc).__name__}", f"cannot reach the cloud at {where}: {exc}")


def explain_time_error(probe: Probe | None, local_now: float) -> str:
    """The message for a certificate time error, knowing what the probe saw (if anything)."""
    if probe is None or probe.not_before is None or probe.not_after is None:
        return (
            "the cloud's certificate looks out of date by this device's clock: probably clock "
            f"skew; {NTP_FIX}"
        )
    window = f"{_utc(probe.not_before)} to {_utc(probe.not_after)}"
    if probe.cloud_time is not None:
        skew = (probe.sent + probe.received) / 2 - probe.cloud_time
        if probe.not_before <= probe.cloud_time <= probe.not_after:
            return (
                f"clock skew: {describe_skew(skew)}, so the cloud's certificate (valid {window}) "
                f"looks out of date here; {NTP_FIX}"
            )
        return (
            f"the cloud's certificate (valid {window}) is out of date by the cloud's own clock "
            "too: renew the cloud's server certificate"
        )
    side = "behind" if local_now < probe.not_before else "ahead of"
    return (
        f"clock skew: this device's clock ({_utc(local_now)}) is {side} the cloud "
        f"certificate's validity ({window}); {NTP_FIX}"
    )


def outside_own_certificate(now: float, not_before: float, not_after: float) -> str | None:
    """A message when ``now`` lies outside this device's own certificate's validity."""
    if not_before <= now <= not_after:
        return None
    if now < not_before:
        return (
            f"clock skew: this device's clock ({_utc(now)}) is at least {amount(not_before - now)}"
            f" behind the cloud's, which issued its certificate from {_utc(not_before)}; {NTP_FIX}"
        )
    return None  # past its end: genuinely expired unless the clock runs ahead (status says)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


async def probe(cloud_url: str, timeout_s: float = PROBE_TIMEOUT_S) -> Probe | None:
    """The cloud's certificate window and clock, over an unverified TLS connection.

    Used only to explain a verification failure; nothing it returns is trusted for access.
    """
    parts = urlsplit(cloud_url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host, port = parts.hostname, parts.port or 443
    writer: asyncio.StreamWriter | None = None
    try:
        sent = time.time()
        reader, opened = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout_s
        )
        writer = opened
        ssl_object = opened.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        opened.write(
            f"HEAD /v2/health/live HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.read(4096), timeout_s)
        received = time.time()
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    date = None
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "date":
            date = value.strip()
    not_before = not_after = None
    if der:
        cert = x509.load_der_x509_certificate(der)
        not_before = cert.not_valid_before_utc.timestamp()
        not_after = cert.not_valid_after_utc.timestamp()
    return Probe(sent, received, server_time(date), not_before, not_after)


class CloudTrouble:
    """What goes wrong with the cloud, told once.

    Each distinct problem is logged once (again after ``RELOG_S`` if it persists).
    """

    RELOG_S = 3600.0

    def __init__(self, cloud_url: str, clock: ClockSkew) -> None:
        self.cloud_url = cloud_url
        self.clock = clock
        self._told: dict[str, float] = {}
        self._time_message: str | None = None  # the probe's explanation, until probed again

    def _once(self, key: str, message: str, now: float) -> None:
        told = self._told.get(key)
        if told is None or now - told > self.RELOG_S:
            self._told[key] = now
            log.error("%s", message)

    async def failed(self, exc: BaseException) -> str:
        """The message for a failed call (``CloudUnavailable``/``SyncError``), logged once."""
        now = time.time()
        if not any(isinstance(c, httpx.HTTPError) for c in _chain(exc)):
            self._once(f"other:{type(exc).__name__}:{str(exc)[:60]}", str(exc), now)
            return str(exc)
        problem = diagnose(exc, self.cloud_url)
        if not problem.time_error:
            self._once(problem.key, problem.message, now)
            return problem.message
        key = problem.key
        if key not in self._told or now - self._told[key] > self.RELOG_S:
            seen = await probe(self.cloud_url)
            if seen is not None and seen.cloud_time is not None:
                self.clock.observe(seen.sent, seen.received, seen.cloud_time, told=True)
            self._time_message = explain_time_error(seen, now)
            self._once(key, self._time_message, now)
        return self._time_message or problem.message

    def refused(self, what: str, exc: ApiError) -> str:
        """The message for a call the cloud refused (4xx), logged once per kind."""
        message = f"{what} refused by the cloud: {exc.code}: {exc.message}"
        self._once(f"refused:{what}:{exc.code}", message, time.time())
        return message

    def own_certificate(self, cert: x509.Certificate | None, now: float) -> None:
        """Log once when this device's clock lies before its own certificate's start."""
        if cert is None:
            return
        message = outside_own_certificate(
            now, cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
        )
        if message is not None:
            self._once("own-certificate-time", message, now)
