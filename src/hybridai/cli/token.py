"""``hybridai token``: API tokens for automation (scripts, CI), each with one role."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, out, print_json

app = typer.Typer(help="Create, list and revoke API tokens for automation.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what uses it, e.g. ci-deploy.")],
    role: Annotated[str, typer.Option(help="admin, operator, data-scientist or viewer.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token (admin); it is shown once, the cloud keeps only its hash."""
    data = call(cloud, token, "POST", "/api/v1/api-tokens", json={"name": name, "role": role})
    if as_json:
        print_json(data)
    else:
        out.print(data["token"])


@app.command("list")
def list_tokens(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List API tokens (ids, names, roles; never the tokens themselves) (admin)."""
    data = call(cloud, token, "GET", "/api/v1/api-tokens")
    if as_json:
        print_json(data)
        return
    table = Table(title="API tokens")
    for col in ("id", "name", "role", "state"):
        table.add_column(col)
    for t in data:
        table.add_row(t["token_id"], t["name"], t["role"], "revoked" if t["revoked"] else "active")
    out.print(table)


@app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="Token id from `hybridai token list`.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Revoke an API token: refused from the next request on (admin)."""
    data = call(cloud, token, "DELETE", f"/api/v1/api-tokens/{token_id}")
    out.print(f"revoked {data['token_id']} ({data['name']})")


@app.command("revoke-bootstrap")
def revoke_bootstrap(cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None) -> None:
    """Revoke the bootstrap admin token (DATA_DIR/admin.token) for good (admin).

    Do it once an admin with MFA can log in (refused before, as it would lock every admin out);
    the compliance report fails until it is done. Later commands need that admin's login.
    """
    data = call(cloud, token, "POST", "/api/v1/api-tokens/bootstrap/revoke")
    if data["revoked"]:
        out.print("revoked the bootstrap admin token; admins log in with `hybridai login`")
    else:
        out.print("the bootstrap admin token was already revoked")
