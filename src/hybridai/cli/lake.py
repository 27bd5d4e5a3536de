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
