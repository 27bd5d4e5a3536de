"""The platform PKI: files and permissions, CSRs, device certificates, the edge's identity."""

from __future__ import annotations

import ipaddress
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from hybridai.edge.identity import DeviceIdentity
from hybridai.link import pki

NOW = time.time()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_a_ca_and_server_certificate_with_private_keys_0600(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    paths, created = pki.init_cloud_pki(root, ["cloud.example.com", "10.0.0.7"], NOW)

    assert len(created) == 4 and paths.exists()
    assert _mode(paths.ca_key) == 0o600 and _mode(paths.server_key) == 0o600
    server = pki.load_cert(paths.server_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "cloud.example.com"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.0.0.7")
    }
    ca = pki.load_cert(paths.ca_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_init_is_idempotent_and_keeps_the_ca(tmp_path: Path) -> None:
    paths, _ = pki.init_cloud_pki(tmp_path, [], NOW)
    ca_before = paths.ca_cert.read_bytes()

    _, created = pki.init_cloud_pki(tmp_path, [], NOW)

    assert created == [] and paths.ca_cert.read_bytes() == ca_before


def test_a_passphrase_encrypts_the_ca_key(tmp_path: Path) -> None:
    paths, _ = pki.init_cloud_pki(tmp_path, [], NOW, passphrase="s3cret")

    assert b"ENCRYPTED" in paths.ca_key.read_bytes()
    with pytest.raises(pki.PkiError, match="passphrase"):
        paths.load_ca(None)
    with pytest.raises(pki.PkiError):
        paths.load_ca("wrong")
    ca, key = paths.load_ca("s3cret")
    assert ca.public_key() == key.public_key()


def test_a_device_certificate_names_its_device_in_cn_and_san_uri() -> None:
    ca, ca_key = pki.create_ca(NOW)
    csr = pki.device_csr(pki.new_key(), "gw-1")

    cert = pki.sign_device(ca, ca_key, csr, "gw-1", NOW, 86400)

    assert pki.device_id_of(cert) == "gw-1"
    assert cert.subject.rfc4514_string() == "CN=gw-1"
    assert pki.not_after(cert) == pytest.approx(NOW + 86400, abs=1)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # a client of the cloud and of its peers, and the server of its peer listener
    assert list(usage) == [
        x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
    ]
    cert.verify_directly_issued_by(ca)


def test_a_csr_for_another_device_or_malformed_is_refused() -> None:
    ca, ca_key = pki.create_ca(NOW)
    with pytest.raises(pki.PkiError, match="names device 'gw-2'"):
        pki.sign_device(ca, ca_key, pki.device_csr(pki.new_key(), "gw-2"), "gw-1", NOW, 60)
    with pytest.raises(pki.PkiError, match="not a PEM"):
        pki.csr_device_id("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")


def test_a_certificate_whose_cn_and_san_disagree_names_no_device() -> None:
    ca, ca_key = pki.create_ca(NOW)
    key = pki.new_key()
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "gw-1")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(ca.not_valid_before_utc)
        .not_valid_after(ca.not_valid_after_utc)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(pki.DEVICE_URI_PREFIX + "gw-2")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    with pytest.raises(pki.PkiError):
        pki.device_id_of(forged)


def test_the_edge_keeps_its_key_0600_and_only_accepts_its_own_certificate(tmp_path: Path) -> None:
    ca, ca_key = pki.create_ca(NOW)
    identity = DeviceIdentity(tmp_path, "gw-1")
    csr = identity.csr()
    assert _mode(identity.key_file) == 0o600
    assert identity.csr() and identity.key_file.read_bytes() == identity.key_file.read_bytes()
    assert not identity.valid(NOW) and identity.renew_at() == 0.0

    # A certificate for another key, or another device, is not stored.
    foreign = pki.sign_device(ca, ca_key, pki.device_csr(pki.new_key(), "gw-1"), "gw-1", NOW, 90)
    with pytest.raises(pki.PkiError, match="key"):
        identity.store(pki.cert_pem(foreign), pki.cert_pem(ca))
    assert not identity.cert_file.exists()

    cert = pki.sign_device(ca, ca_key, csr, "gw-1", NOW, 90)
    identity.store(pki.cert_pem(cert), pki.cert_pem(ca))
    assert identity.valid(NOW) and not identity.valid(NOW + 91)
    assert identity.ca_file == identity.stored_ca_file
    # Renew once less than a third of the lifetime is left.
    lifetime = pki.not_after(cert) - pki.not_before(cert)
    assert identity.renew_at() == pytest.approx(pki.not_after(cert) - lifetime / 3)
    identity.context(NOW)  # loads the key pair: they belong together
