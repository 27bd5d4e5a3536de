"""The platform PKI: one CA, the cloud's server certificate, short-lived device certificates.

The CA key stays in the cloud's ``pki/`` folder (mode 0600, encrypted when a passphrase is
given); a device's key is made on the device and only its CSR travels. A device certificate
names its device twice, in the subject CN and in a SAN URI (``urn:hybridai:device:ID``), and
``device_id_of`` accepts it only when both agree. Keys are ECDSA P-256: small and fast to
handshake on the smallest gateway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEVICE_URI_PREFIX = "urn:hybridai:device:"
CA_LIFETIME_S = 10 * 365 * 86400
SERVER_LIFETIME_S = 2 * 365 * 86400
CLOCK_SKEW_S = 300  # certificates start a little in the past: device clocks drift
LOCAL_NAMES = ("127.0.0.1", "::1", "localhost")

PrivateKey = ec.EllipticCurvePrivateKey


class PkiError(ValueError):
    """A CSR or certificate that the platform will not accept, with the reason."""


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (0600), atomically: never a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate atomically (readers see the old or the new file, never a mix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def key_pem(key: PrivateKey, passphrase: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_key(path: Path, passphrase: str | None = None) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(
            path.read_bytes(), passphrase.encode() if passphrase else None
        )
    except (TypeError, ValueError) as exc:
        raise PkiError(
            f"cannot read the private key {path}: {exc} (is the passphrase right? set it in "
            "HYBRIDAI_CLOUD_CA_PASSPHRASE)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} is not an EC private key")
    return key


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert(pem: str | bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from None


def serial_hex(cert: x509.Certificate) -> str:
    return f"{cert.serial_number:x}"


def public_key_sha256(cert: x509.Certificate) -> str:
    """sha256 (hex) of the certificate's SubjectPublicKeyInfo: what an identity is bound to.

    A device keeps its key across renewals, so this stays put while serials change; a
    certificate that names a device but carries another key is somebody else.
    """
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def not_after(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()


def not_before(cert: x509.Certificate) -> float:
    return cert.not_valid_before_utc.timestamp()


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: float,
    life: float,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - CLOCK_SKEW_S))
        .not_valid_after(_utc(now + life))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def create_ca(
    now: float, name: str = "hybridai platform CA"
) -> tuple[x509.Certificate, PrivateKey]:
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key(), now, CA_LIFETIME_S)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _aki(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(True, False, False, False, False, False, False, False, False)


def issue_server(
    ca: x509.Certificate, ca_key: PrivateKey, names: list[str], now: float
) -> tuple[x509.Certificate, PrivateKey]:
    """The cloud's certificate, valid for loopback plus every configured name or address."""
    key = new_key()
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys([*LOCAL_NAMES, *names]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hybridai cloud")])
    cert = (
        _builder(subject, ca.subject, key.public_key(), now, SERVER_LIFETIME_S)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(_aki(ca), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def device_csr(key: PrivateKey, device_id: str) -> str:
    """The CSR an edge sends: its public key and its name, signed with its private key."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(DEVICE_URI_PREFIX + device_id)]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _common_names(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _device_uris(extensions: x509.Extensions) -> list[str]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        uri[len(DEVICE_URI_PREFIX) :]
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(DEVICE_URI_PREFIX)
    ]


def csr_device_id(csr_pem: str) -> str:
    """The device a CSR names; refuses a malformed, unsigned or ambiguous request."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise PkiError("the CSR's signature does not match its public key")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise PkiError("the CSR must carry an EC (P-256) public key")
    names = set(_common_names(csr.subject)) | set(_device_uris(csr.extensions))
    if len(names) != 1:
        raise PkiError(
            f"the CSR must name exactly one device (CN and SAN URI), got {sorted(names)}"
        )
    return names.pop()


def sign_device(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    csr_pem: str,
    device_id: str,
    now: float,
    life_s: float,
) -> x509.Certificate:
    """Sign a device's CSR into a certificate for ``device_id``, valid ``life_s``.

    It authenticates the device as a client (to the cloud, to its site peers) and as a server
    (its peer listener); the SAN is a URI, not a host name, so peers check the device id and
    key, never a host name.
    """
    named = csr_device_id(csr_pem)
    if named != device_id:
        raise PkiError(f"the CSR names device {named!r}, not {device_id!r}")
    public_key = x509.load_pem_x509_csr(csr_pem.encode()).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    san = [x509.UniformResourceIdentifier(DEVICE_URI_PREFIX + device_id)]
    return (
        _builder(subject, ca.subject, public_key, now, life_s)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(
            # server too: a device serves its site peers over mTLS with the same identity
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(_aki(ca), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def device_id_of(cert: x509.Certificate) -> str:
    """The device a certificate names (CN and SAN URI must agree)."""
    cns, uris = _common_names(cert.subject), _device_uris(cert.extensions)
    if len(uris) != 1 or cns != uris:
        raise PkiError("the certificate does not name one device in both its CN and SAN URI")
    return uris[0]


@dataclass(frozen=True)
class CloudPki:
    """Where the cloud's PKI files live (``DATA_DIR/pki``)."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    def exists(self) -> bool:
        return all(
            p.exists() for p in (self.ca_cert, self.ca_key, self.server_cert, self.server_key)
        )

    def load_ca(self, passphrase: str | None = None) -> tuple[x509.Certificate, PrivateKey]:
        return load_cert(self.ca_cert.read_bytes()), load_key(self.ca_key, passphrase)


def init_cloud_pki(
    root: Path, names: list[str], now: float, passphrase: str | None = None
) -> tuple[CloudPki, list[str]]:
    """Create what is missing (CA, then server certificate); returns the files it created.

    Idempotent: an existing CA is kept (every device certificate hangs off it); a server
    certificate is made again only when absent, so new names need its files removed first.
    """
    pki = CloudPki(root)
    created: list[str] = []
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        ca, ca_key = create_ca(now)
        write_private(pki.ca_key, key_pem(ca_key, passphrase))
        write_public(pki.ca_cert, cert_pem(ca).encode())
        created += [str(pki.ca_key), str(pki.ca_cert)]
    if not (pki.server_cert.exists() and pki.server_key.exists()):
        ca, ca_key = pki.load_ca(passphrase)
        cert, key = issue_server(ca, ca_key, names, now)
        write_private(pki.server_key, key_pem(key))
        write_public(pki.server_cert, cert_pem(cert).encode())
        created += [str(pki.server_key), str(pki.server_cert)]
    return pki, created
