"""A TLS client context that accepts exactly one device: its id and one of its public keys.

A device certificate names a device (SAN URI), not a host, so host-name checks say nothing
about a site peer; an address on a LAN proves nothing either. The caller knows from the cloud
which device it means to reach and the keys the cloud recorded for it. The context verifies
the chain to the platform CA as usual, then, as the handshake completes and before a byte of
the request is sent, checks the presented certificate names that device and carries one of
those keys; otherwise the connection fails as a certificate error (``httpx.ConnectError``).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509

from hybridai.link import pki
from hybridai.link.tls import client_context


class _PinnedObject(ssl.SSLObject):
    """``SSLObject`` whose handshake also checks the peer against ``expected``/``keys``."""

    expected: str = ""
    keys: frozenset[str] = frozenset()

    def do_handshake(self) -> None:
        super().do_handshake()  # SSLWantReadError until done: checked only once complete
        der = self.getpeercert(binary_form=True)
        if der is None:
            raise ssl.SSLCertVerificationError("the peer presented no certificate")
        cert = x509.load_der_x509_certificate(der)
        try:
            named = pki.device_id_of(cert)
        except pki.PkiError:
            named = None
        if named != self.expected:
            raise ssl.SSLCertVerificationError(
                f"the peer's certificate is not device {self.expected}'s"
            )
        if pki.public_key_sha256(cert) not in self.keys:
            raise ssl.SSLCertVerificationError(
                f"the peer's certificate for {self.expected} carries a key the cloud did not "
                "record for it"
            )


def pinned_context(
    ca_file: Path | None,
    device_id: str,
    keys: Iterable[str],
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """TLS 1.3 to ``device_id`` only (one of ``keys``, SPKI sha256), presenting our own cert."""
    context = client_context(ca_file, cert_file, key_file)
    context.check_hostname = False  # the SAN names a device, not a host: the pin checks who
    context.verify_mode = ssl.CERT_REQUIRED
    context.sslobject_class = type(
        "PinnedObject", (_PinnedObject,), {"expected": device_id, "keys": frozenset(keys)}
    )
    return context
