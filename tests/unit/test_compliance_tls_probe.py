"""The compliance report's TLS control against real listeners: plain, TLS 1.2, TLS 1.3 only."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hybridai.cloud.compliance import probe_tls12


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "c.pem", folder / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def listener(context: ssl.SSLContext | None) -> Iterator[int]:
    """Serve connections on loopback: a TLS handshake (if any), then a tiny HTTP answer."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), conn:
                conn.settimeout(2)
                sock = context.wrap_socket(conn, server_side=True) if context else conn
                sock.recv(1024)
                sock.sendall(b"HTTP/1.0 200 OK\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def _server_context(tmp_path: Path, minimum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = minimum
    context.load_cert_chain(*_self_signed(tmp_path))
    return context


def test_plain_http_fails() -> None:
    with listener(None) as port:
        status, detail = probe_tls12("127.0.0.1", port)
    assert status == "fail" and "plain HTTP" in detail


def test_a_listener_that_negotiates_tls12_fails(tmp_path: Path) -> None:
    with listener(_server_context(tmp_path, ssl.TLSVersion.TLSv1_2)) as port:
        status, detail = probe_tls12("127.0.0.1", port)
    assert status == "fail" and "TLS 1.2" in detail


def test_a_tls13_only_listener_passes(tmp_path: Path) -> None:
    with listener(_server_context(tmp_path, ssl.TLSVersion.TLSv1_3)) as port:
        status, _ = probe_tls12("127.0.0.1", port)
    assert status == "pass"


def test_nobody_listening_is_unknown() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    status, _ = probe_tls12("127.0.0.1", port)
    assert status == "unknown"
