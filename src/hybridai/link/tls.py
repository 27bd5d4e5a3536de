"""TLS contexts for the platform: TLS 1.3 only, both ends verified against the platform CA.

The server asks every client for a certificate but does not demand one at the handshake
(``CERT_OPTIONAL``): people and automation authenticate with bearer tokens, while device
routes refuse a request without a verified device certificate. A certificate that does not
verify (another CA, expired) fails the handshake itself.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerTls:
    """What a server needs for mTLS: its certificate and key, and the CA its clients chain to."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def _tls13_only(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    return context


def server_context(tls: ServerTls) -> ssl.SSLContext:
    context = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(tls.cert_file, tls.key_file)
    context.load_verify_locations(cafile=tls.ca_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(
    ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """Verify the server against ``ca_file`` (the system store when None); present a cert if given.

    ``load_identity`` swaps the certificate later (renewal) without a new context: new
    connections present the new one, open ones finish on the old.
    """
    context = _tls13_only(ssl.create_default_context(cafile=str(ca_file) if ca_file else None))
    if cert_file is not None and key_file is not None:
        load_identity(context, cert_file, key_file)
    return context


def load_identity(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    context.load_cert_chain(cert_file, key_file)
