"""``hybridai lake``: query the central lake with SQL."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, out, print_json

app = typer.Typer(help="Query the central Delta Lake with DuckDB SQL.", no_args_is_help=True)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL; each stream is a view by its name.")],
    limit: Annotated[int, typer.Option(help="Most rows to return.")] = 1000,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run SQL over the lake, e.g. "SELECT site, count(*) FROM telemetry GROUP BY site"."""
    data = call(cloud, token, "POST", "/api/v1/lake/query", json={"sql": sql, "limit": limit})
    if as_json:
        print_json(data)
        return
    table = Table()
    for col in data["columns"]:
        table.add_column(col)
    for row in data["rows"]:
        table.add_row(*(str(v) for v in row))
    out.print(table)
    if data["truncated"]:
        out.print(f"[yellow]truncated to {limit} rows[/]")


@app.command()
def tables(cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None) -> None:
    """List streams with their current Delta table version."""
    print_json(call(cloud, token, "GET", "/api/v1/lake/tables"))


@app.command()
def retention(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Apply each stream's lake retention period now: delete (and vacuum) older rows."""
    data = call(cloud, token, "POST", "/api/v1/lake/retention")
    if as_json:
        print_json(data)
        return
    if not data["deleted"]:
        out.print("no stream has a lake retention period (`hybridai policy set --lake-retention`)")
    for stream, deleted in sorted(data["deleted"].items()):
        out.print(f"{stream}: deleted {deleted} row(s)")


def _print_maintenance(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    out.print(
        f"{data['stream']}: {data['action']} done at version {data['version']}: "
        f"{data['files_removed']} file(s) compacted into {data['files_added']}, "
        f"{data['files_deleted']} deleted; the current version reads {data['files_now']}"
    )


@app.command()
def optimize(
    stream: Annotated[str, typer.Argument(help="Stream (Delta table) to compact.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compact a stream's small files (one per edge batch) into large ones; rows unchanged."""
    body = {"stream": stream, "action": "optimize"}
    data = call(cloud, token, "POST", "/api/v1/lake/maintenance", json=body)
    _print_maintenance(data, as_json)


@app.command()
def vacuum(
    stream: Annotated[str, typer.Argument(help="Stream (Delta table) to vacuum.")],
    retain_hours: Annotated[
        float,
        typer.Option(help="Keep files that versions of the last N hours read (time travel)."),
    ] = 168.0,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete data files no version younger than --retain-hours needs (after optimize)."""
    body = {"stream": stream, "action": "vacuum", "retain_hours": retain_hours}
    data = call(cloud, token, "POST", "/api/v1/lake/maintenance", json=body)
    _print_maintenance(data, as_json)


def _grantee(role: str | None, user: str | None) -> tuple[str, str]:
    if (role is None) == (user is None):
        raise typer.BadParameter("give exactly one of --role or --user")
    return ("role", role) if role is not None else ("user", user or "")


RoleOpt = Annotated[str | None, typer.Option(help="Grant to every user of this role.")]
UserOpt = Annotated[str | None, typer.Option(help="Grant to this one user.")]


@app.command()
def grant(
    stream: Annotated[str, typer.Argument(help="Stream whose rows the grantee may query.")],
    role: RoleOpt = None,
    user: UserOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let a role or a user read a stream (admins read every stream without a grant)."""
    kind, name = _grantee(role, user)
    body = {"kind": kind, "name": name}
    data = call(cloud, token, "PUT", f"/api/v1/lake/grants/{stream}", json=body)
    if as_json:
        print_json(data)
        return
    out.print(f"{kind} {name} may read {stream}")


@app.command()
def revoke(
    stream: Annotated[str, typer.Argument(help="Stream to take the grant away from.")],
    role: RoleOpt = None,
    user: UserOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Take a read grant away; the grantee's next query of the stream is refused (403)."""
    kind, name = _grantee(role, user)
    call(cloud, token, "DELETE", f"/api/v1/lake/grants/{stream}/{kind}/{name}")
    out.print(f"{kind} {name} may no longer read {stream}")


@app.command()
def grants(
    stream: Annotated[str | None, typer.Option(help="Only this stream's grants.")] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List read grants on lake streams."""
    params = f"?stream={stream}" if stream else ""
    data = call(cloud, token, "GET", f"/api/v1/lake/grants{params}")
    if as_json:
        print_json(data)
        return
    table = Table("stream", "grantee", "granted by")
    for row in data:
        table.add_row(row["stream"], f"{row['kind']} {row['name']}", row["granted_by"])
    out.print(table)
