"""``hybridai user``: add, list and disable users; enroll a second factor (TOTP)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hybridai.cli._api import (
    DEFAULT_CLOUD,
    CloudOpt,
    JsonOpt,
    TokenOpt,
    call,
    fail,
    out,
    print_json,
    settings,
)

app = typer.Typer(help="Manage users and their second factor.", no_args_is_help=True)
ROLES = "admin, operator, data-scientist or viewer"


def _password(prompt: str) -> str:
    given = settings().password
    if given is not None:
        return given.get_secret_value()
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return value


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name (lowercase letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help=f"Role: {ROLES}.")] = "viewer",
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user (admin); the password is asked for, or read from HYBRIDAI_PASSWORD."""
    body = {"name": name, "role": role, "password": _password(f"password for {name}")}
    data = call(cloud, token, "POST", "/api/v1/users", json=body)
    if as_json:
        print_json(data)
        return
    out.print(f"added {data['name']} ({data['role']})")
    if role in ("admin", "operator"):
        out.print(f"role {role} needs MFA: {name} runs `hybridai user mfa-enroll {name}` first")


@app.command("list")
def list_users(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List users with their role, MFA and state (admin)."""
    data = call(cloud, token, "GET", "/api/v1/users")
    if as_json:
        print_json(data)
        return
    table = Table(title="users")
    for col in ("user", "role", "mfa", "state", "created by"):
        table.add_column(col)
    for u in data:
        table.add_row(
            u["name"],
            u["role"],
            "yes" if u["mfa_enabled"] else "no",
            "disabled" if u["disabled"] else "active",
            u["created_by"],
        )
    out.print(table)


@app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="User to disable.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Disable a user: logins and their live access tokens are refused at once (admin)."""
    call(cloud, token, "POST", f"/api/v1/users/{name}/disable")
    out.print(f"disabled {name}")


@app.command("mfa-enroll")
def mfa_enroll(
    name: Annotated[str, typer.Argument(help="User to enroll (yourself, or any as admin).")],
    code: Annotated[
        str | None,
        typer.Option(help="Confirm with this code instead of being asked (scripts)."),
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enroll a TOTP authenticator: shows the secret once, then confirms it with a code."""
    data = call(cloud, token, "POST", f"/api/v1/users/{name}/mfa")
    if as_json:
        print_json(data)
    else:
        out.print(f"secret: {data['secret']}")
        out.print(f"otpauth URI (for a QR code): {data['otpauth_uri']}")
    if code is None:
        if as_json:
            return  # a script confirms later with --code
        code = typer.prompt("code shown by the authenticator app")
    if not code.strip():
        raise fail("no code given: enrollment is not confirmed; run the command again")
    call(cloud, token, "POST", f"/api/v1/users/{name}/mfa/confirm", json={"code": code})
    if not as_json:
        out.print(f"MFA enrolled for {name}: log in with `hybridai login {name} --code CODE`")
