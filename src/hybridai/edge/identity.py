"""The device's identity on disk: its private key, its certificate and the CA it trusts.

The key is made here and written 0600 in ``DATA_DIR/tls``; only CSRs leave the device. The
same key is kept across renewals (a renewal swaps the certificate file atomically), so a
crash never leaves a key and a certificate that do not belong together. The CA to trust is
``--ca-file`` when given (the trust bootstrap for enrollment), else the one the cloud sent at
enrollment, over a connection that was verified against it.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from hybridai.link import pki
from hybridai.link.tls import client_context, load_identity

RENEW_WHEN_LEFT = 1 / 3  # renew when less than a third of the lifetime remains


class DeviceIdentity:
    def __init__(self, data_dir: Path, device_id: str, ca_file: Path | None = None) -> None:
        self.root = data_dir / "tls"
        self.device_id = device_id
        self.key_file = self.root / "device.key"
        self.cert_file = self.root / "device.crt"
        self.stored_ca_file = self.root / "ca.crt"
        self.given_ca_file = ca_file

    @property
    def ca_file(self) -> Path | None:
        if self.given_ca_file is not None:
            return self.given_ca_file
        return self.stored_ca_file if self.stored_ca_file.exists() else None

    def certificate(self) -> x509.Certificate | None:
        if not (self.cert_file.exists() and self.key_file.exists()):
            return None
        return pki.load_cert(self.cert_file.read_bytes())

    def valid(self, now: float) -> bool:
        """Whether a certificate in this device's name is here and still in date."""
        cert = self.certificate()
        return (
            cert is not None
            and pki.device_id_of(cert) == self.device_id
            and pki.not_after(cert) > now
        )

    def renew_at(self) -> float:
        """When to renew: once less than a third of the lifetime is left (0 if no certificate)."""
        cert = self.certificate()
        if cert is None:
            return 0.0
        start, end = pki.not_before(cert), pki.not_after(cert)
        return end - (end - start) * RENEW_WHEN_LEFT

    def csr(self) -> str:
        """A CSR for this device, making (and keeping, 0600) its key on first use."""
        if self.key_file.exists():
            key = pki.load_key(self.key_file)
        else:
            key = pki.new_key()
            pki.write_private(self.key_file, pki.key_pem(key))
        return pki.device_csr(key, self.device_id)

    def store(self, certificate_pem: str, ca_pem: str) -> None:
        """Keep what the cloud signed, after checking it is ours and matches our key."""
        cert = pki.load_cert(certificate_pem)
        if pki.device_id_of(cert) != self.device_id:
            raise pki.PkiError(f"the cloud signed a certificate for another device: {cert.subject}")
        if cert.public_key() != pki.load_key(self.key_file).public_key():
            raise pki.PkiError("the cloud's certificate does not match this device's key")
        pki.load_cert(ca_pem)
        pki.write_public(self.stored_ca_file, ca_pem.encode())
        pki.write_public(self.cert_file, certificate_pem.encode())

    def context(self, now: float) -> ssl.SSLContext:
        """A TLS 1.3 client context; it presents the certificate only while it is in date."""
        context = client_context(self.ca_file)
        if self.valid(now):
            self.present(context)
        return context

    def present(self, context: ssl.SSLContext) -> None:
        """Present the current certificate on new connections (open ones keep theirs)."""
        if self.given_ca_file is None and self.stored_ca_file.exists():
            context.load_verify_locations(cafile=self.stored_ca_file)
        load_identity(context, self.cert_file, self.key_file)
