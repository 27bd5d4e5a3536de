"""``hybridai lake``: query the central lake with SQL."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, out, print_json

app = typer.Typer(help="Query the central Delta Lake with DuckDB SQL.", no_args_is_help=True)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL; each dataset is a view by its name.")],
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
    """List datasets with their current Delta table version."""
    print_json(call(cloud, token, "GET", "/api/v1/lake/tables"))


@app.command()
def retention(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Apply each dataset's lake retention period now: delete (and vacuum) older rows."""
    data = call(cloud, token, "POST", "/api/v1/lake/retention")
    if as_json:
        print_json(data)
        return
    if not data["deleted"]:
        out.print("no dataset has a lake retention period (`hybridai policy set --lake-retention`)")
    for dataset, deleted in sorted(data["deleted"].items()):
        out.print(f"{dataset}: deleted {deleted} row(s)")


def _print_maintenance(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    out.print(
        f"{data['dataset']}: {data['action']} done at version {data['version']}: "
        f"{data['files_removed']} file(s) compacted into {data['files_added']}, "
        f"{data['files_deleted']} deleted; the current version reads {data['files_now']}"
    )


@app.command()
def optimize(
    dataset: Annotated[str, typer.Argument(help="Dataset (Delta table) to compact.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compact a dataset's small files (one per edge batch) into large ones; rows unchanged."""
    body = {"dataset": dataset, "action": "optimize"}
    data = call(cloud, token, "POST", "/api/v1/lake/maintenance", json=body)
    _print_maintenance(data, as_json)


@app.command()
def vacuum(
    dataset: Annotated[str, typer.Argument(help="Dataset (Delta table) to vacuum.")],
    retain_hours: Annotated[
        float,
        typer.Option(help="Keep files that versions of the last N hours read (time travel)."),
    ] = 168.0,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete data files no version younger than --retain-hours needs (after optimize)."""
    body = {"dataset": dataset, "action": "vacuum", "retain_hours": retain_hours}
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
    dataset: Annotated[str, typer.Argument(help="Dataset whose rows the grantee may query.")],
    role: RoleOpt = None,
    user: UserOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let a role or a user read a dataset (admins read every dataset without a grant)."""
    kind, name = _grantee(role, user)
    body = {"kind": kind, "name": name}
    data = call(cloud, token, "PUT", f"/api/v1/lake/grants/{dataset}", json=body)
    if as_json:
        print_json(data)
        return
    out.print(f"{kind} {name} may read {dataset}")


@app.command()
def revoke(
    dataset: Annotated[str, typer.Argument(help="Dataset to take the grant away from.")],
    role: RoleOpt = None,
    user: UserOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Take a read grant away; the grantee's next query of the dataset is refused (403)."""
    kind, name = _grantee(role, user)
    call(cloud, token, "DELETE", f"/api/v1/lake/grants/{dataset}/{kind}/{name}")
    out.print(f"{kind} {name} may no longer read {dataset}")


@app.command()
def grants(
    dataset: Annotated[str | None, typer.Option(help="Only this dataset's grants.")] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List read grants on lake datasets."""
    params = f"?dataset={dataset}" if dataset else ""
    data = call(cloud, token, "GET", f"/api/v1/lake/grants{params}")
    if as_json:
        print_json(data)
        return
    table = Table("dataset", "grantee", "granted by")
    for row in data:
        table.add_row(row["dataset"], f"{row['kind']} {row['name']}", row["granted_by"])
    out.print(table)
