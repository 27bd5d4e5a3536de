"""How commands reach the cloud API: one client, errors turned into readable exits.

Where a command finds the cloud, what it trusts and who it is come from the CLI's settings
(``cli/_settings.py``: flags, ``HYBRIDAI_*`` variables, config.toml). When they name no CA or
token, the local cloud's DATA_DIR (``HYBRIDAI_CLOUD_DATA_DIR`` or config.toml's ``[cloud]``,
exactly as ``hybridai cloud serve`` reads it) supplies ``pki/ca.crt`` and ``admin.token``, so
commands work from any directory.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from hybridai.cli import _session
from hybridai.cli import _settings as cli_settings
from hybridai.cli._options import env_names, option
from hybridai.cli._settings import CliSettings
from hybridai.config_file import ConfigFileError
from hybridai.link.tls import client_context
from hybridai.link.transport import client

err = Console(stderr=True)
out = Console()
Source = Literal["given", "login", "admin-token", "none"]


def fail(message: str, code: int = 1) -> typer.Exit:
    # the message is text, not markup: "[test_rows_leak]" and a server's words print as they are
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def settings() -> CliSettings:
    """The CLI's settings now; a broken config file or variable is a clear exit, not a trace."""
    try:
        return cli_settings.load()
    except ConfigFileError as exc:
        raise fail(str(exc)) from None
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else ""
        env = env_names(CliSettings, name)[0] if name in CliSettings.model_fields else name
        raise fail(f"bad setting {env}: {problem['msg']}") from None


def cloud_data_dir() -> Path:
    try:
        return cli_settings.cloud_data_dir()
    except (ConfigFileError, ValidationError) as exc:
        raise fail(f"cannot read the cloud's settings for its DATA_DIR: {exc}") from None


def _defaulted(ctx: typer.Context, param: typer.CallbackParam) -> bool:
    """Whether neither the command line nor the environment set this option."""
    source = ctx.get_parameter_source(param.name) if param.name else None
    return source is not None and source.name == "DEFAULT"  # typer may vendor its own click


def _from_settings(name: str) -> Callable[[typer.Context, typer.CallbackParam, Any], Any]:
    """An option callback: a value no flag or variable set comes from config.toml or default."""

    def fill(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if not _defaulted(ctx, param):
            return value
        return getattr(settings(), name)

    return fill


def _json_default(ctx: typer.Context, param: typer.CallbackParam, value: bool) -> bool:
    if not _defaulted(ctx, param):
        return value
    return settings().output == "json"


DEFAULT_CLOUD: str = CliSettings.model_fields["cloud_url"].default
CloudOpt = Annotated[
    str, option(CliSettings, "cloud_url", "--cloud", callback=_from_settings("cloud_url"))
]
TokenOpt = Annotated[str | None, option(CliSettings, "token", "--token")]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the result as JSON (the default when HYBRIDAI_OUTPUT is json).",
        callback=_json_default,
    ),
]
ca_file: Path | None = None  # set by the global --ca-file option (cli/main.py)


def resolve_ca() -> ssl.SSLContext | bool:
    """Trust: --ca-file / HYBRIDAI_CA_FILE / config.toml, the local cloud's CA, the system's."""
    chosen = ca_file or settings().ca_file
    if chosen is None:
        local = cloud_data_dir() / "pki" / "ca.crt"
        chosen = local if local.exists() else None
    if chosen is None:
        return True
    if not chosen.exists():
        raise fail(
            f"CA file {chosen} does not exist: pass --ca-file (HYBRIDAI_CA_FILE) naming the "
            "cloud's DATA_DIR/pki/ca.crt"
        )
    return client_context(chosen)


def _expired(session: dict[str, Any]) -> typer.Exit:
    user = str(session.get("username") or "NAME")
    at = float(session.get("expires_at", 0))
    when = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ago = max(0, round((time.time() - at) / 60))
    return fail(
        f"your login as {user} expired at {when} ({ago} min ago; logins last "
        f"HYBRIDAI_CLOUD_ACCESS_TOKEN_TTL_S): log in again with `hybridai login {user}`, "
        "or `hybridai logout` to use other credentials (--token, HYBRIDAI_TOKEN)"
    )


def credentials(token: str | None) -> tuple[str | None, Source]:
    """The token to send, and where it came from.

    In order: given (flag, variable, config.toml), your login, the local cloud's bootstrap
    admin token, none. An expired login is an error, never a silent switch to other credentials.
    """
    if token:
        return token, "given"
    configured = settings().token
    if configured is not None:
        return configured.get_secret_value(), "given"
    session = _session.load(include_expired=True)
    if session is not None:
        if _session.expired(session):
            raise _expired(session)
        return str(session["token"]), "login"
    admin = cloud_data_dir() / "admin.token"
    if admin.exists():
        return admin.read_text().strip(), "admin-token"
    return None, "none"


def resolve_token(token: str | None) -> str | None:
    return credentials(token)[0]


def _refused(source: Source) -> str:
    """What to do when the cloud answered 401 to these credentials."""
    if source == "login":
        return "the cloud refused your login (expired or revoked there): `hybridai login NAME`"
    if source == "admin-token":
        path = cloud_data_dir() / "admin.token"
        return (
            f"the cloud refused the local admin token {path} (revoked?): log in with "
            "`hybridai login NAME`"
        )
    if source == "none":
        return (
            "no credentials: log in with `hybridai login NAME`, pass --token (HYBRIDAI_TOKEN), "
            "or set HYBRIDAI_CLOUD_DATA_DIR to the local cloud's data dir (its admin.token)"
        )
    return "check --token / HYBRIDAI_TOKEN"


def call(cloud: str, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; exits with the cloud's own message on an error answer."""
    sent, source = credentials(token)
    try:
        with client(cloud, token=sent, timeout=120.0, verify=resolve_ca()) as http:
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
        if response.status_code == 401:
            raise fail(f"HTTP 401: {message}: {_refused(source)}")
        raise fail(f"HTTP {response.status_code}: {message}")
    if not response.content:
        return None
    return response.json()


def print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))
