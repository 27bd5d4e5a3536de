"""Configuration an edge refuses at start, before it would retry forever in silence.

A wrong scheme, a missing CA file or a device with neither a certificate nor a token can never
work however long the agent retries, so ``hybridai edge run`` says what is wrong and exits
non-zero. What may heal by itself (the cloud down, a network cut) is left to the agent's retries.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cryptography import x509

from hybridai.edge.identity import DeviceIdentity
from hybridai.edge.settings import EdgeSettings

EXAMPLE = "https://cloud.example.com:8400"


def cloud_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the cloud's base URL (None: it can)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"--cloud {url} is not a URL: give one like {EXAMPLE}"
    if parts.scheme == "http":
        return (
            f"--cloud {url} is plain http: the edge talks to the cloud only over TLS (mTLS), "
            f"so give its https:// URL, e.g. {EXAMPLE}"
        )
    if parts.scheme != "https":
        return f"--cloud {url} is not an https:// URL: give one like {EXAMPLE}"
    if not parts.hostname:
        return f"--cloud {url} names no host: give one like {EXAMPLE}"
    if port == 0:
        return f"--cloud {url} names port 0: give the port the cloud listens on"
    if parts.query or parts.fragment:
        return f"--cloud {url} carries a query or fragment: give just the base URL, e.g. {EXAMPLE}"
    return None


def config_problems(settings: EdgeSettings, now: float) -> list[str]:
    """Everything wrong with ``settings`` that retrying cannot fix, each with what to do."""
    problems: list[str] = []
    url = cloud_url_problem(settings.cloud_url)
    if url is not None:
        problems.append(url)
    ca = settings.ca_file
    if ca is not None:
        if not ca.is_file():
            problems.append(
                f"--ca-file {ca} does not exist: copy the cloud's DATA_DIR/pki/ca.crt here and "
                "name it"
            )
        else:
            try:
                x509.load_pem_x509_certificates(ca.read_bytes())
            except (ValueError, OSError):
                problems.append(
                    f"--ca-file {ca} holds no PEM certificate: name the cloud's DATA_DIR/pki/ca.crt"
                )
    identity = DeviceIdentity(settings.data_dir, settings.device_id, settings.ca_file)
    if settings.enroll_token is None and not identity.valid(now):
        held = identity.certificate() is not None
        problems.append(
            (
                "this device's certificate has expired (by this device's clock: check it too)"
                if held
                else "this device holds no certificate yet"
            )
            + ": start it with --enroll-token from `hybridai fleet enroll-token SITE/DEVICE`"
        )
    return problems
