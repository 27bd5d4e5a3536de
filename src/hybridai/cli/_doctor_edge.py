"""``hybridai doctor edge``: what stands between this edge's settings and a working agent.

Read-only: it binds no port for longer than a probe, sends one request to the cloud (two once
enrolled) and one MQTT CONNECT under its own client id (the agent's would take over the running
agent's broker session). Failures name their cause as the agent itself would
(``edge.link_problems``), so doctor and the agent's log say the same thing.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hybridai.cli._checks import (
    Check,
    certificate,
    clock_skew,
    disk,
    failed,
    passed,
    port_in_use,
    utc,
    warned,
)
from hybridai.edge.clock import server_time
from hybridai.edge.identity import DeviceIdentity
from hybridai.edge.link_problems import diagnose, explain_time_error, probe
from hybridai.edge.settings import EdgeSettings
from hybridai.edge.startup_checks import cloud_url_problem
from hybridai.link import pki
from hybridai.protocol.runtime import CPU_PROVIDER
from hybridai.serving.providers import plan

TIMEOUT_S = 5.0
CA_WARN_S = 30 * 86400
ENROLL_FIX = "start the edge with --enroll-token from `hybridai fleet enroll-token SITE/DEVICE`"


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _agent_answers(settings: EdgeSettings) -> bool:
    """Whether a hybridai edge answers on the API port (its health route needs no key)."""
    try:
        url = f"http://{_local(settings.host)}:{settings.port}/v2/health/live"
        return httpx.get(url, timeout=TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        return False


def ports(settings: EdgeSettings) -> list[Check]:
    running = _agent_answers(settings)
    peer = settings.peer_port or settings.port + 1
    checks = []
    for name, port, env in (
        ("api port", settings.port, "HYBRIDAI_EDGE_PORT"),
        ("peer port", peer, "HYBRIDAI_EDGE_PEER_PORT"),
    ):
        where = f"{settings.host}:{port}"
        if not port_in_use(settings.host, port):
            checks.append(passed(name, f"{where} is free for the agent (it is not running)"))
        elif running:
            checks.append(passed(name, f"{where} is held by the running edge agent"))
        else:
            checks.append(
                failed(
                    name,
                    f"{where} is taken by another program",
                    f"stop that program or give the edge another port ({env})",
                )
            )
    return checks


def data_dir(settings: EdgeSettings) -> list[Check]:
    folder = settings.data_dir
    if not folder.exists():
        found = warned(
            "data dir",
            f"{folder} does not exist",
            "nothing to do for a new device (the agent creates it); for an enrolled one, point "
            "--data-dir (HYBRIDAI_EDGE_DATA_DIR) at its data",
        )
    elif not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        found = failed(
            "data dir",
            f"{folder} is not a folder this user can write",
            f"give the agent's user write access to {folder} or pick another --data-dir",
        )
    else:
        found = passed("data dir", f"{folder} is writable")
    return [found, disk("disk", folder, "the edge's store and models")]


def certificates(settings: EdgeSettings, identity: DeviceIdentity, now: float) -> list[Check]:
    checks: list[Check] = []
    ca = identity.ca_file
    if ca is None:
        checks.append(
            warned(
                "ca",
                "no --ca-file and no CA from an enrollment: the cloud must chain to a system CA",
                "pass --ca-file (HYBRIDAI_EDGE_CA_FILE) naming the cloud's DATA_DIR/pki/ca.crt",
            )
        )
    else:
        checks.append(
            certificate(
                "ca",
                ca,
                now,
                missing_fix="copy the cloud's DATA_DIR/pki/ca.crt here and name it with --ca-file",
                renew_fix="renew the platform CA and give devices the new one",
                warn_within_s=CA_WARN_S,
            )
        )
    cert = identity.certificate()
    if cert is None:
        return checks  # the enrollment check says what to do
    owner = pki.device_id_of(cert)
    if owner != settings.device_id:
        checks.append(
            failed(
                "device certificate",
                f"{identity.cert_file} names device {owner}, not {settings.device_id}",
                "set --device-id to the enrolled id, or enroll this id with a new token",
            )
        )
        return checks
    start, end = pki.not_before(cert), pki.not_after(cert)
    checks.append(
        certificate(
            "device certificate",
            identity.cert_file,
            now,
            missing_fix=ENROLL_FIX,
            renew_fix="the agent renews it while it reaches the cloud; once expired, " + ENROLL_FIX,
            warn_within_s=(end - start) / 6,  # renewal is due at a third: overdue by half
        )
    )
    return checks


def enrollment(settings: EdgeSettings, identity: DeviceIdentity, now: float) -> Check:
    cert = identity.certificate()
    token = settings.enroll_token is not None
    if cert is not None and identity.valid(now):
        note = " (its enroll token was used: remove it from the config)" if token else ""
        return passed("enrollment", f"enrolled as {settings.device_id}{note}")
    if token:
        state = "its certificate expired" if cert is not None else "not enrolled yet"
        return warned(
            "enrollment",
            f"{state}; the agent enrolls with the token at its next start",
            "none, unless the token was used before or expired: then ask for a new one "
            "(`hybridai fleet enroll-token SITE/DEVICE`)",
        )
    if cert is not None:
        return failed(
            "enrollment", f"the certificate expired {utc(pki.not_after(cert))}", ENROLL_FIX
        )
    return failed("enrollment", f"no certificate in {identity.root} and no token", ENROLL_FIX)


def _context(identity: DeviceIdentity, now: float) -> ssl.SSLContext | None:
    try:
        return identity.context(now)
    except (OSError, ssl.SSLError, ValueError):
        return None


def cloud(settings: EdgeSettings, identity: DeviceIdentity, now: float) -> list[Check]:
    """Reachability with the exact TLS/HTTP error, the clock from its answer, device access."""
    problem = cloud_url_problem(settings.cloud_url)
    if problem is not None:
        return [failed("cloud", settings.cloud_url, problem)]
    context = _context(identity, now)
    if context is None:
        return [
            failed(
                "cloud",
                "the CA or the device's key and certificate cannot be loaded",
                "pass --ca-file naming the cloud's DATA_DIR/pki/ca.crt, or re-enroll the device",
            )
        ]
    base = settings.cloud_url.rstrip("/")
    try:
        with httpx.Client(base_url=base, verify=context, timeout=TIMEOUT_S) as http:
            sent = time.time()
            answer = http.get("/v2/health/live")
            received = time.time()
            checks = _answered(settings, answer, sent, received)
            if answer.status_code < 400 and identity.valid(now):
                checks.append(_accepted(http.get(_desired(settings)), settings))
            return checks
    except httpx.HTTPError as exc:
        found = diagnose(exc, settings.cloud_url)
        message = found.message
        if found.time_error:
            message = explain_time_error(asyncio.run(probe(settings.cloud_url)), time.time())
        return [failed("cloud", _first(message), _fix(message))]


def _desired(settings: EdgeSettings) -> str:
    return f"/api/v1/devices/{settings.device_id}/desired-state"


def _first(message: str) -> str:
    """What happened: the link problems read 'what: what to do'."""
    return message.partition(": ")[0]


def _fix(message: str) -> str:
    return message.partition(": ")[2] or "check --cloud and --ca-file"


def _answered(
    settings: EdgeSettings, answer: httpx.Response, sent: float, received: float
) -> list[Check]:
    base = settings.cloud_url
    if answer.status_code >= 400:
        return [
            failed(
                "cloud",
                f"{base} answered HTTP {answer.status_code} to its health route",
                "check that --cloud names the hybridai cloud (not a proxy or another service)",
            )
        ]
    checks = [passed("cloud", f"{base} answered over TLS 1.3 in {received - sent:.2f} s")]
    cloud_time = server_time(answer.headers.get("date"))
    if cloud_time is None:
        checks.append(
            warned("clock skew", "the cloud's answer has no Date header", "check --cloud")
        )
    else:
        skew = (sent + received) / 2 - cloud_time
        checks.append(clock_skew("clock skew", skew, settings.max_clock_skew_s, "the cloud"))
    return checks


def _accepted(answer: httpx.Response, settings: EdgeSettings) -> Check:
    if answer.status_code < 400:
        return passed("device access", f"the cloud accepts {settings.device_id}'s certificate")
    try:
        reason = str(answer.json().get("code"))
    except ValueError:
        reason = f"HTTP {answer.status_code}"
    return failed(
        "device access",
        f"the cloud refuses {settings.device_id}'s certificate ({reason}, HTTP "
        f"{answer.status_code})",
        "if the device was revoked, " + ENROLL_FIX,
    )


_CONNACK_FIX = {
    "Bad user name or password": "set HYBRIDAI_EDGE_MQTT_USERNAME / _PASSWORD to the broker's",
    "Not authorized": "allow this user on the broker (its ACL), or use one that is",
}


def mqtt(settings: EdgeSettings) -> list[Check]:
    """One MQTT CONNECT under a doctor's own client id; the broker's CONNACK is the verdict."""
    if not settings.mqtt_url:
        return []
    url = urlsplit(settings.mqtt_url)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        return [
            failed(
                "mqtt broker",
                f"{settings.mqtt_url} is not an MQTT URL",
                "set HYBRIDAI_EDGE_MQTT_URL to mqtt://HOST:PORT or mqtts://HOST:PORT",
            )
        ]
    host, port = url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883)
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"hybridai-doctor-{settings.device_id}-{os.getpid()}",
        protocol=paho.MQTTv5,
    )
    username = settings.mqtt_username or url.username
    if username:
        secret = settings.mqtt_password
        client.username_pw_set(username, secret.get_secret_value() if secret else url.password)
    if url.scheme == "mqtts":
        ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
        client.tls_set_context(ssl.create_default_context(cafile=ca))
    done = threading.Event()
    outcome: list[str] = []

    def on_connect(*args: object) -> None:
        outcome.append(str(args[3]))  # (client, userdata, flags, reason_code, properties)
        done.set()

    client.on_connect = on_connect
    where = f"{host}:{port}"
    try:
        client.connect(host, port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        client.loop_stop()
        return [
            failed(
                "mqtt broker",
                f"cannot connect to {where}: {exc.strerror or exc}",
                "start the broker, or fix HYBRIDAI_EDGE_MQTT_URL",
            )
        ]
    client.loop_start()
    done.wait(TIMEOUT_S)
    client.disconnect()
    client.loop_stop()
    if not outcome:
        return [
            failed(
                "mqtt broker",
                f"{where} accepted a connection but sent no CONNACK",
                "check that HYBRIDAI_EDGE_MQTT_URL names an MQTT port (mqtts:// for TLS)",
            )
        ]
    if outcome[0] != "Success":
        fix = _CONNACK_FIX.get(outcome[0], "check the broker's log for why it refused")
        return [failed("mqtt broker", f"{where} refused the connection: {outcome[0]}", fix)]
    return [passed("mqtt broker", f"{where} accepted an MQTT connection")]


def execution_providers(settings: EdgeSettings, available: list[str] | None = None) -> Check:
    """Which ONNX Runtime providers models will run on; a configured one missing is a warning.

    The default order names hardware a machine may lack (that is its point); an order the
    operator set names what they expect to be there.
    """
    if available is None:
        import onnxruntime

        available = list(onnxruntime.get_available_providers())
    chosen = plan(settings.execution_providers, None, None, available).providers
    detail = f"onnxruntime offers {', '.join(available)}; models run on {chosen[0]}"
    missing = [p for p in settings.execution_providers if p not in available and p != CPU_PROVIDER]
    if missing and "execution_providers" in settings.model_fields_set:
        return warned(
            "execution providers",
            f"{detail}, not on {', '.join(missing)}",
            "install the onnxruntime package that has it (e.g. onnxruntime-gpu for CUDA, "
            "docs/execution-providers.md) or drop it from HYBRIDAI_EDGE_EXECUTION_PROVIDERS",
        )
    return passed("execution providers", detail)


def edge_checks(settings: EdgeSettings, now: float | None = None) -> list[Check]:
    """Every check of an edge install, in the order a person would fix them."""
    at = time.time() if now is None else now
    identity = DeviceIdentity(settings.data_dir, settings.device_id, settings.ca_file)
    return [
        *data_dir(settings),
        *ports(settings),
        *certificates(settings, identity, at),
        enrollment(settings, identity, at),
        *cloud(settings, identity, at),
        *mqtt(settings),
        execution_providers(settings),
    ]
