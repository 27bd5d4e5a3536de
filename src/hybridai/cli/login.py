"""``hybridai login`` / ``hybridai logout``: a short-lived access token for this user's CLI."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from hybridai.cli import _session
from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, call, err, out, settings


def login(
    username: Annotated[str, typer.Argument(help="Your user name.")],
    code: Annotated[
        str | None, typer.Option(help="TOTP code (required for admin and operator).")
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
) -> None:
    """Log in; later commands use the token (in HYBRIDAI_CONFIG_DIR/token, mode 0600).

    The password is prompted for, or read from HYBRIDAI_PASSWORD. The login lasts the cloud's
    HYBRIDAI_CLOUD_ACCESS_TOKEN_TTL_S (15 min by default); commands say when it expired.
    """
    given = settings().password
    password = given.get_secret_value() if given else typer.prompt("password", hide_input=True)
    body = {"username": username, "password": password, "code": code}
    data = call(cloud, "-", "POST", "/api/v1/auth/login", json=body)
    path = _session.save(cloud, data["username"], data["access_token"], data["expires_at"])
    until = dt.datetime.fromtimestamp(data["expires_at"]).strftime("%H:%M:%S")
    out.print(f"logged in as {data['username']} ({data['role']}) until {until}; token in {path}")
    if data.get("message"):
        err.print(f"[yellow]{data['message']}[/]")


def logout(cloud: CloudOpt = DEFAULT_CLOUD) -> None:
    """Revoke the stored access token at the cloud and forget it here."""
    session = _session.load(include_expired=True)
    if session is None:
        _session.clear()
        out.print("not logged in")
        return
    if _session.expired(session):  # the cloud refuses it anyway: nothing to revoke
        _session.clear()
        out.print(f"the login as {session.get('username', '')} had expired; forgot it")
        return
    try:
        call(session.get("cloud") or cloud, session["token"], "POST", "/api/v1/auth/logout")
    finally:
        _session.clear()
    out.print(f"logged out {session.get('username', '')}")
