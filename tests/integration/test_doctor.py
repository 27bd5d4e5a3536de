"""``hybridai doctor``: real installs, real failures, each named with its fix.

A real cloud and an enrolled edge (tests/_fleet.py) must pass. The failure cases are real too:
a TLS server over loopback that plays a misconfigured cloud (certificate from another CA, for
another host name, expired, a clock two hours off), a port nothing listens on, a port another
program holds, an http:// URL, a missing data directory, a device certificate that expired,
Mosquitto up at 127.0.0.1:1883 against a broker that is down, an unreachable PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _fleet import local_fleet
from hybridai.demo.fleet import LocalFleet
from hybridai.link import pki

BROKER = ("127.0.0.1", 1883)
DAY = 86400.0


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, Any]:
    """``hybridai doctor ARGS --json`` in its own process, with no HYBRIDAI_* but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDAI_")}
    clean |= {"HYBRIDAI_CONFIG_DIR": str(cwd / ".config"), "COLUMNS": "200", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "hybridai", "doctor", *args, "--json"],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in report["checks"] if c["name"] == name]
    assert found, f"no check {name} in {[c['name'] for c in report['checks']]}"
    check: dict[str, Any] = found[0]
    assert (check["fix"] == "") == (check["verdict"] == "pass"), check  # a fix for all but pass
    return check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path_factory.mktemp("ws")) as started:
        started.start_edge("edge-1", "plant-a")
        yield started


def _edge_args(fleet: LocalFleet, device: str = "edge-1") -> list[str]:
    """The settings the edge runs with, as doctor flags (data dir relative to the workspace)."""
    args, port, env = fleet._edge_args[device]
    flags = dict(zip(args[2::2], args[3::2], strict=False))
    return [
        "--cloud",
        flags["--cloud"],
        "--ca-file",
        flags["--ca-file"],
        "--device-id",
        device,
        "--data-dir",
        flags["--data-dir"],
        "--port",
        str(port),
        "--peer-port",
        env["HYBRIDAI_EDGE_PEER_PORT"],
    ]


@pytest.mark.slow
def test_a_running_enrolled_edge_passes(fleet: LocalFleet) -> None:
    code, report = _cli(["edge", *_edge_args(fleet)], fleet.workspace)

    assert code == 0, report
    assert report["ok"] is True
    for name in ("data dir", "ca", "device certificate", "enrollment", "cloud", "device access"):
        assert _check(report, name)["verdict"] == "pass", _check(report, name)
    assert "running edge agent" in _check(report, "api port")["detail"]
    assert "running edge agent" in _check(report, "peer port")["detail"]
    skew = _check(report, "clock skew")
    assert skew["verdict"] == "pass" and "the cloud" in skew["detail"]


@pytest.mark.slow
def test_a_port_another_program_holds_fails(fleet: LocalFleet, tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        args = [*_edge_args(fleet), "--port", str(port), "--peer-port", str(_free_port())]

        code, report = _cli(["edge", *args], fleet.workspace)

    assert code == 1
    check = _check(report, "api port")
    assert check["verdict"] == "fail" and "another program" in check["detail"]
    assert "HYBRIDAI_EDGE_PORT" in check["fix"]


@pytest.mark.slow
def test_a_cloud_port_nothing_listens_on_is_named(fleet: LocalFleet) -> None:
    args = [*_edge_args(fleet), "--cloud", f"https://127.0.0.1:{_free_port()}"]

    code, report = _cli(["edge", *args], fleet.workspace)

    assert code == 1
    cloud = _check(report, "cloud")
    assert cloud["verdict"] == "fail" and "nothing listens" in cloud["detail"]
    assert "cloud is running" in cloud["fix"]


def test_an_http_url_is_refused_with_the_https_fix(tmp_path: Path) -> None:
    code, report = _cli(["edge", "--cloud", "http://127.0.0.1:8400"], tmp_path)

    assert code == 1
    cloud = _check(report, "cloud")
    assert cloud["verdict"] == "fail" and "plain http" in cloud["fix"]


def test_a_missing_data_dir_warns_and_an_unenrolled_device_fails(tmp_path: Path) -> None:
    args = ["edge", "--data-dir", str(tmp_path / "nowhere"), "--port", str(_free_port())]
    args += ["--cloud", f"https://127.0.0.1:{_free_port()}"]

    code, report = _cli(args, tmp_path)

    assert code == 1
    assert report["ok"] is False
    assert _check(report, "data dir")["verdict"] == "warn"
    enrollment = _check(report, "enrollment")
    assert enrollment["verdict"] == "fail" and "enroll-token" in enrollment["fix"]
    assert _check(report, "disk")["verdict"] == "pass"


def test_a_token_waiting_to_enroll_is_a_warning(tmp_path: Path) -> None:
    env = {"HYBRIDAI_EDGE_ENROLL_TOKEN": "one-time"}

    _, report = _cli(["edge", "--data-dir", str(tmp_path / "new")], tmp_path, env)

    assert _check(report, "enrollment")["verdict"] == "warn"


# -- certificates made for the failure cases ---------------------------------------------------


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _server_cert(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    host: str,
    start: float,
    end: float,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    san: x509.GeneralName = x509.DNSName(host)
    if host[0].isdigit():
        import ipaddress

        san = x509.IPAddress(ipaddress.ip_address(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(start, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(end, dt.UTC))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


class _Cloudish(http.server.BaseHTTPRequestHandler):
    """Answers the health route as the cloud would, with a Date ``skew_s`` off the real time."""

    skew_s = 0.0

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.skew_s, usegmt=True)

    def do_GET(self) -> None:
        body = b'{"live": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def misconfigured_cloud(tmp_path: Path) -> Iterator[Any]:
    """Start a TLS 1.3 server with a chosen certificate and clock; yields a starter."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        skew_s: float = 0.0,
        oldest: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    ) -> str:
        folder = tmp_path / f"server{len(servers)}"
        folder.mkdir()
        pki.write_public(folder / "s.crt", pki.cert_pem(cert).encode())
        pki.write_private(folder / "s.key", pki.key_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = oldest
        context.load_cert_chain(folder / "s.crt", folder / "s.key")
        handler = type("Handler", (_Cloudish,), {"skew_s": skew_s})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"https://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ca(tmp_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    cert, key = pki.create_ca(time.time() - DAY)
    path = tmp_path / "ca.crt"
    pki.write_public(path, pki.cert_pem(cert).encode())
    return cert, key, path


def _doctor_against(url: str, ca_file: Path, tmp_path: Path) -> dict[str, Any]:
    args = ["edge", "--cloud", url, "--ca-file", str(ca_file), "--data-dir", str(tmp_path / "d")]
    code, report = _cli([*args, "--port", str(_free_port())], tmp_path)
    assert code == 1
    return report


def test_a_cloud_certificate_from_another_ca_is_named(
    misconfigured_cloud: Any, ca: Any, tmp_path: Path
) -> None:
    other, other_key = pki.create_ca(time.time() - DAY, name="someone else's CA")
    url = misconfigured_cloud(
        *_server_cert(other, other_key, "127.0.0.1", time.time() - DAY, time.time() + DAY)
    )

    cloud = _check(_doctor_against(url, ca[2], tmp_path), "cloud")

    assert cloud["verdict"] == "fail"
    assert "not signed by a CA this edge trusts" in cloud["detail"]
    assert "--ca-file" in cloud["fix"]


def test_a_cloud_certificate_for_another_host_is_named(
    misconfigured_cloud: Any, ca: Any, tmp_path: Path
) -> None:
    url = misconfigured_cloud(
        *_server_cert(ca[0], ca[1], "cloud.example.com", time.time() - DAY, time.time() + DAY)
    )

    cloud = _check(_doctor_against(url, ca[2], tmp_path), "cloud")

    assert cloud["verdict"] == "fail"
    assert "does not name 127.0.0.1" in cloud["detail"]
    assert "HYBRIDAI_CLOUD_TLS_NAMES" in cloud["fix"]


def test_an_expired_cloud_certificate_is_told_apart_from_clock_skew(
    misconfigured_cloud: Any, ca: Any, tmp_path: Path
) -> None:
    url = misconfigured_cloud(
        *_server_cert(ca[0], ca[1], "127.0.0.1", time.time() - 3 * DAY, time.time() - DAY)
    )

    cloud = _check(_doctor_against(url, ca[2], tmp_path), "cloud")

    assert cloud["verdict"] == "fail"
    assert "out of date by the cloud's own clock too" in cloud["detail"]
    assert "renew the cloud's server certificate" in cloud["fix"]


def test_a_cloud_clock_hours_off_fails_the_skew_check(
    misconfigured_cloud: Any, ca: Any, tmp_path: Path
) -> None:
    cert = _server_cert(ca[0], ca[1], "127.0.0.1", time.time() - DAY, time.time() + DAY)
    url = misconfigured_cloud(*cert, skew_s=-7200.0)

    report = _doctor_against(url, ca[2], tmp_path)

    assert _check(report, "cloud")["verdict"] == "pass"
    skew = _check(report, "clock skew")
    assert skew["verdict"] == "fail"
    assert "ahead of the cloud" in skew["detail"] and "NTP" in skew["fix"]


def test_an_expired_device_certificate_fails_with_re_enrollment(ca: Any, tmp_path: Path) -> None:
    """The device holds a certificate that ended yesterday, and no token to enroll again."""
    root = tmp_path / "d" / "tls"
    root.mkdir(parents=True)
    key = pki.new_key()
    pki.write_private(root / "device.key", pki.key_pem(key))
    csr = pki.device_csr(key, "edge-1")
    cert = pki.sign_device(ca[0], ca[1], csr, "edge-1", time.time() - 2 * DAY, DAY)
    pki.write_public(root / "device.crt", pki.cert_pem(cert).encode())
    args = ["edge", "--ca-file", str(ca[2]), "--data-dir", str(tmp_path / "d")]

    code, report = _cli([*args, "--cloud", f"https://127.0.0.1:{_free_port()}"], tmp_path)

    assert code == 1
    device = _check(report, "device certificate")
    assert device["verdict"] == "fail" and "expired" in device["detail"]
    assert "enroll-token" in device["fix"]
    assert _check(report, "enrollment")["verdict"] == "fail"
    assert _check(report, "ca")["verdict"] == "pass"


# -- MQTT ----------------------------------------------------------------------------------------


@pytest.fixture
def broker() -> None:
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Mosquitto is not running at 127.0.0.1:1883 (CI=true: start it)")
        pytest.skip("no MQTT broker at 127.0.0.1:1883")


def test_mqtt_broker_up_passes_and_down_fails(broker: None, tmp_path: Path) -> None:
    base = ["edge", "--data-dir", str(tmp_path / "d"), "--port", str(_free_port())]
    up_url = f"mqtt://{BROKER[0]}:{BROKER[1]}"
    down_url = f"mqtt://127.0.0.1:{_free_port()}"

    _, up = _cli([*base, "--mqtt-url", up_url], tmp_path)
    _, down = _cli([*base, "--mqtt-url", down_url], tmp_path)
    _, none = _cli(base, tmp_path)

    assert _check(up, "mqtt broker")["verdict"] == "pass"
    failed = _check(down, "mqtt broker")
    assert failed["verdict"] == "fail" and "cannot connect" in failed["detail"]
    assert "HYBRIDAI_EDGE_MQTT_URL" in failed["fix"]
    assert not [c for c in none["checks"] if c["name"] == "mqtt broker"]


# -- the cloud -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_running_cloud_passes(fleet: LocalFleet) -> None:
    args = ["cloud", "--data-dir", "cloud", "--port", str(fleet.cloud_port)]

    code, report = _cli(args, fleet.workspace)

    assert code == 0, report
    database = _check(report, "database")
    assert database["verdict"] == "pass" and "migrated to head" in database["detail"]
    for name in ("blob store", "lake", "platform ca", "server certificate", "ca key"):
        assert _check(report, name)["verdict"] == "pass", _check(report, name)
    assert _check(report, "listener")["detail"].endswith("speaks TLSv1.3 only")


def test_an_unreachable_database_and_a_stopped_cloud(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{_free_port()}/test"
    args = ["cloud", "--data-dir", str(tmp_path), "--database-url", url]

    code, report = _cli([*args, "--port", str(_free_port())], tmp_path)

    assert code == 1
    database = _check(report, "database")
    assert database["verdict"] == "fail" and "cannot reach" in database["detail"]
    assert "secret" not in json.dumps(report)  # the password never shows
    assert _check(report, "listener")["verdict"] == "warn"
    assert _check(report, "pki")["verdict"] == "warn"


def test_a_listener_that_also_speaks_tls_1_2_fails(
    misconfigured_cloud: Any, ca: Any, tmp_path: Path
) -> None:
    cert = _server_cert(ca[0], ca[1], "127.0.0.1", time.time() - DAY, time.time() + DAY)
    url = misconfigured_cloud(*cert, oldest=ssl.TLSVersion.TLSv1_2)
    port = url.rsplit(":", 1)[1]

    code, report = _cli(["cloud", "--data-dir", str(tmp_path), "--port", port], tmp_path)

    assert code == 1
    listener = _check(report, "listener")
    assert listener["verdict"] == "fail" and "also accepts TLSv1.2" in listener["detail"]


def test_the_table_names_each_failure_and_its_fix(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDAI_")}
    args = ["doctor", "edge", "--data-dir", str(tmp_path / "none"), "--cloud", "http://x:1"]
    args += ["--port", str(_free_port()), "--peer-port", str(_free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "hybridai", *args],
        cwd=tmp_path,
        env=clean | {"HYBRIDAI_CONFIG_DIR": str(tmp_path), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1
    assert "hybridai doctor: edge" in done.stdout
    assert "plain http" in done.stdout and "enroll-token" in done.stdout
    assert "2 failed" in done.stdout
