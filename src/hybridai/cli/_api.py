"""How commands reach the cloud API: one client, errors turned into readable exits."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from hybridai.cli import _session
from hybridai.link.tls import client_context
from hybridai.link.transport import client

err = Console(stderr=True)
out = Console()

CloudOpt = Annotated[
    str, typer.Option("--cloud", envvar="HYBRIDAI_CLOUD_URL", help="Cloud API base URL.")
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="HYBRIDAI_TOKEN",
        help="API token (default: the local cloud's .hybridai/cloud/admin.token, if present).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DEFAULT_CLOUD = "https://127.0.0.1:8400"
LOCAL_ADMIN_TOKEN = Path(".hybridai/cloud/admin.token")
LOCAL_CA = Path(".hybridai/cloud/pki/ca.crt")
ca_file: Path | None = None  # set by the global --ca-file option (cli/main.py)


def resolve_ca() -> ssl.SSLContext | bool:
    """Trust for the cloud: --ca-file, HYBRIDAI_CA_FILE, the local cloud's CA, else the system's."""
    chosen = ca_file or (
        Path(os.environ["HYBRIDAI_CA_FILE"]) if os.environ.get("HYBRIDAI_CA_FILE") else None
    )
    if chosen is None and LOCAL_CA.exists():
        chosen = LOCAL_CA
    if chosen is None:
        return True
    if not chosen.exists():
        raise fail(f"CA file {chosen} does not exist: pass the cloud's DATA_DIR/pki/ca.crt")
    return client_context(chosen)


def resolve_token(token: str | None) -> str | None:
    if token:
        return token
    logged_in = _session.stored_token()  # from `hybridai login`, until it expires
    if logged_in:
        return logged_in
    if LOCAL_ADMIN_TOKEN.exists():
        return LOCAL_ADMIN_TOKEN.read_text().strip()
    return os.environ.get("HYBRIDAI_TOKEN")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def call(cloud: str, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; exits with the cloud's own message on an error answer."""
    try:
        with client(cloud, token=resolve_token(token), timeout=120.0, verify=resolve_ca()) as http:
            response = http.request(method, path, **kwargs)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise fail(
                f"the cloud at {cloud} presented a certificate this CLI does not trust: pass "
                "--ca-file / HYBRIDAI_CA_FILE naming the cloud's DATA_DIR/pki/ca.crt"
            ) from None
        raise fail(
            f"cannot reach the cloud at {cloud} ({type(exc).__name__}); is `hybridai cloud "
            "serve` running, and is --cloud / HYBRIDAI_CLOUD_URL right?"
        ) from None
    except httpx.HTTPError as exc:
        raise fail(
            f"cannot reach the cloud at {cloud} ({type(exc).__name__}); is `hybridai cloud "
            "serve` running, and is --cloud / HYBRIDAI_CLOUD_URL right?"
        ) from None
    if response.status_code >= 400:
        try:
            body = response.json()
            message = f"{body['error']} [{body['code']}]"
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise fail(f"HTTP {response.status_code}: {message}")
    if not response.content:
        return None
    return response.json()


def print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))
