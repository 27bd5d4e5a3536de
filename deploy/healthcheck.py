"""Container health probe: exit 0 when GET URL answers 200, 1 otherwise (stdlib only).

Usage: python healthcheck.py URL [CA_FILE]. An https URL is verified against CA_FILE (the
platform CA the cloud writes to DATA_DIR/pki/ca.crt). Used by the images' HEALTHCHECK on the
Open Inference Protocol's /v2/health routes, which answer without credentials.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request


def probe(url: str, ca_file: str | None = None, timeout_s: float = 3.0) -> bool:
    """Whether ``url`` answers 200 within ``timeout_s``."""
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as answer:
            return int(answer.status) == 200
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return False


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(0 if probe(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None) else 1)
