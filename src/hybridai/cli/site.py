"""``hybridai site key``: API keys for a site's LAN clients (sensors, PLCs, apps)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, err, out, print_json

app = typer.Typer(
    help="Manage what a site's LAN clients use to reach its edges.", no_args_is_help=True
)
key_app = typer.Typer(
    help="Create, list and revoke site API keys (checked by the site's edges offline).",
    no_args_is_help=True,
)
app.add_typer(key_app, name="key")


@key_app.command("create")
def create(
    site: Annotated[str, typer.Argument(help="The site whose edges accept the key.")],
    role: Annotated[
        list[str],
        typer.Option(help="ingest, infer or read; repeat for several (--role ingest --role read)."),
    ],
    name: Annotated[str, typer.Option(help="Who holds it, e.g. line-3-plc.")] = "lan-client",
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a site key (operator); it is shown once, the cloud keeps only its hash.

    LAN clients send it as ``Authorization: Bearer KEY`` (or as the password of HTTP basic
    auth, e.g. ``http://site:KEY@edge:8500``); the site's edges accept it once their desired
    state carries it.
    """
    data = call(
        cloud, token, "POST", f"/api/v1/sites/{site}/keys", json={"name": name, "roles": role}
    )
    if as_json:
        print_json(data)
        return
    err.print(f"site key {data['key_id']} for {site} ({', '.join(data['roles'])}):")
    out.print(data["key"], soft_wrap=True)


@key_app.command("list")
def list_keys(
    site: Annotated[str, typer.Argument(help="The site.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a site's keys (ids, names, roles; never the keys themselves)."""
    data = call(cloud, token, "GET", f"/api/v1/sites/{site}/keys")
    if as_json:
        print_json(data)
        return
    table = Table(title=f"keys of site {site}")
    for col in ("id", "name", "roles", "created", "state"):
        table.add_column(col)
    for k in data:
        created = dt.datetime.fromtimestamp(k["created_at"], dt.UTC).strftime("%Y-%m-%d %H:%M")
        state = "revoked" if k["revoked_at"] is not None else "active"
        table.add_row(k["key_id"], k["name"], ", ".join(k["roles"]), created, state)
    out.print(table)


@key_app.command("revoke")
def revoke(
    site: Annotated[str, typer.Argument(help="The site.")],
    key_id: Annotated[str, typer.Argument(help="Key id from `hybridai site key list`.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Revoke a site key: the site's edges refuse it from their next desired state on."""
    data = call(cloud, token, "DELETE", f"/api/v1/sites/{site}/keys/{key_id}")
    out.print(f"revoked {data['key_id']} ({data['name']}) of site {site}")
