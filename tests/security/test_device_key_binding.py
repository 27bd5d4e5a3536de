"""A device's identity is its key, not its serial: forged certificates against a real cloud.

The cloud runs as its own process over TLS 1.3; a device enrolls through the API with its own
key and CSR, as an edge does. The forgeries copy the enrolled certificate's serial, subject
and SAN onto another key: signed by the platform CA itself (the worst case: someone reached the
CA key, or a CA mis-issued), by another CA, and self-signed.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from _fleet import error_of, local_fleet
from hybridai.demo.fleet import LocalFleet
from hybridai.link import pki
from hybridai.link.tls import client_context

SITE, DEVICE = "site-kb", "edge-kb"


@dataclass
class Enrolled:
    fleet: LocalFleet
    key: pki.PrivateKey
    cert: x509.Certificate
    root: Path

    def client(self, cert: x509.Certificate, key: pki.PrivateKey, name: str) -> httpx.Client:
        """A client of the cloud presenting ``cert`` with ``key`` over mTLS."""
        cert_file, key_file = self.root / f"{name}.crt", self.root / f"{name}.key"
        pki.write_public(cert_file, pki.cert_pem(cert).encode())
        pki.write_private(key_file, pki.key_pem(key))
        context = client_context(self.fleet.ca_file, cert_file, key_file)
        assert self.fleet.cloud is not None
        return httpx.Client(base_url=self.fleet.cloud.url, verify=context, timeout=30)


def _enroll(fleet: LocalFleet, key: pki.PrivateKey) -> x509.Certificate:
    token = fleet.call(
        "POST", "/api/v1/enrollment-tokens", json={"site": SITE, "device_id": DEVICE}
    )["token"]
    assert fleet.api is not None
    with httpx.Client(base_url=fleet.api.base_url, verify=fleet.verify(), timeout=30) as anonymous:
        answer = anonymous.post(
            "/api/v1/enroll",
            json={
                "token": token,
                "device_id": DEVICE,
                "kind": "edge-server",
                "capabilities": {"cores": 2, "memory_mb": 1024},
                "agent_version": "test",
                "csr": pki.device_csr(key, DEVICE),
            },
        )
    assert answer.status_code == 200, answer.text
    return pki.load_cert(answer.json()["certificate"])


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Enrolled]:
    workspace = tmp_path_factory.mktemp("key-binding")
    with local_fleet(workspace / "fleet") as fleet:
        key = pki.new_key()
        yield Enrolled(fleet, key, _enroll(fleet, key), workspace)


def _forge(
    original: x509.Certificate, key: pki.PrivateKey, issuer: x509.Name, signer: pki.PrivateKey
) -> x509.Certificate:
    """``original`` with its serial, subject, dates and SAN, on ``key``, signed by ``signer``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(original.subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(original.serial_number)
        .not_valid_before(original.not_valid_before_utc)
        .not_valid_after(original.not_valid_after_utc)
    )
    for extension in original.extensions:
        if isinstance(extension.value, x509.SubjectKeyIdentifier):
            continue
        if isinstance(extension.value, x509.AuthorityKeyIdentifier):
            continue
        builder = builder.add_extension(extension.value, extension.critical)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    return builder.sign(signer, hashes.SHA256())


def _desired(client: httpx.Client) -> httpx.Response:
    with client:
        return client.get(f"/api/v1/devices/{DEVICE}/desired-state")


def _outside_the_platform_ca(enrolled: Enrolled, thief: pki.PrivateKey) -> list[x509.Certificate]:
    other_ca, other_key = pki.create_ca(dt.datetime.now(dt.UTC).timestamp())
    return [
        _forge(enrolled.cert, thief, enrolled.cert.subject, thief),  # self-signed
        _forge(enrolled.cert, thief, other_ca.subject, other_key),  # another CA, same CA name
    ]


def test_a_certificate_with_the_serial_and_another_key_is_refused_and_audited(
    enrolled: Enrolled,
) -> None:
    ca, ca_key = pki.CloudPki(enrolled.fleet.workspace / "cloud" / "pki").load_ca()
    thief = pki.new_key()
    forged = _forge(enrolled.cert, thief, ca.subject, ca_key)
    assert forged.serial_number == enrolled.cert.serial_number
    assert pki.device_id_of(forged) == DEVICE
    assert _desired(enrolled.client(enrolled.cert, enrolled.key, "genuine")).status_code == 200

    answer = _desired(enrolled.client(forged, thief, "forged-ca"))

    assert error_of(answer) == (401, "certificate_rejected")
    assert "another public key" in answer.json()["error"]
    denied = enrolled.fleet.call(
        "GET", "/api/v1/audit", params={"result": "denied", "action": "GET"}
    )
    refused = [
        e
        for e in denied
        if e["status"] == 401 and DEVICE in e["actor"] and "another public key" in e["detail"]
    ]
    assert refused, denied
    # Forgeries from outside the platform CA do not get as far as the application.
    for n, outside in enumerate(_outside_the_platform_ca(enrolled, thief)):
        try:
            answer = _desired(enrolled.client(outside, thief, f"forged-outside-{n}"))
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError):
            continue  # the handshake refused it
        assert error_of(answer) == (401, "certificate_rejected"), answer.text
    # The genuine device is unaffected by the attempts.
    assert _desired(enrolled.client(enrolled.cert, enrolled.key, "genuine-2")).status_code == 200


def test_a_rotated_key_is_bound_at_renewal(enrolled: Enrolled) -> None:
    """Renewal with a new key moves the binding: the new certificate works, its serial on the
    old key does not."""
    new_key = pki.new_key()
    with enrolled.client(enrolled.cert, enrolled.key, "renewing") as client:
        answer = client.post(
            f"/api/v1/devices/{DEVICE}/certificate", json={"csr": pki.device_csr(new_key, DEVICE)}
        )
    assert answer.status_code == 200, answer.text
    renewed = pki.load_cert(answer.json()["certificate"])
    assert _desired(enrolled.client(renewed, new_key, "renewed")).status_code == 200

    ca, ca_key = pki.CloudPki(enrolled.fleet.workspace / "cloud" / "pki").load_ca()
    on_old_key = _forge(renewed, enrolled.key, ca.subject, ca_key)
    answer = _desired(enrolled.client(on_old_key, enrolled.key, "renewed-old-key"))
    assert error_of(answer) == (401, "certificate_rejected")
