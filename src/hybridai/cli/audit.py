"""``hybridai audit``: read the hash-chained audit log and verify it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from hybridai.cli._api import (
    DEFAULT_CLOUD,
    CloudOpt,
    JsonOpt,
    TokenOpt,
    call,
    err,
    out,
    print_json,
)

app = typer.Typer(help="Read and verify the audit log.", no_args_is_help=True)


def _when(value: str | None, label: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise typer.BadParameter(f"{label}: use epoch seconds or ISO 8601") from None


@app.command("list")
def list_entries(
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    action: Annotated[str | None, typer.Option(help="Action contains, e.g. 'users'.")] = None,
    target: Annotated[str | None, typer.Option(help="Target contains.")] = None,
    result: Annotated[str | None, typer.Option(help="ok, denied, refused or error.")] = None,
    since: Annotated[str | None, typer.Option(help="From (epoch s or ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Until (epoch s or ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(help="Newest N entries.")] = 100,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List audit entries, oldest first, filtered."""
    params = {
        "actor": actor,
        "action": action,
        "target": target,
        "result": result,
        "since": _when(since, "--since"),
        "until": _when(until, "--until"),
        "limit": limit,
    }
    query = {k: v for k, v in params.items() if v is not None}
    data = call(cloud, token, "GET", "/api/v1/audit", params=query)
    if as_json:
        print_json(data)
        return
    table = Table(title="audit log")
    for col in ("#", "when", "who", "role", "what", "target", "from", "result"):
        table.add_column(col)
    for e in data:
        when = dt.datetime.fromtimestamp(e["ts"]).isoformat(timespec="seconds")
        table.add_row(
            str(e["seq"]),
            when,
            e["actor"],
            e["role"],
            e["action"],
            e["target"],
            e["client"],
            f"{e['result']} {e['status']}",
        )
    out.print(table)


@app.command("verify")
def verify(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Check the hash chain; exit code 1 naming each edited, deleted or reordered entry."""
    data = call(cloud, token, "GET", "/api/v1/audit/verify")
    if as_json:
        print_json(data)
    elif data["ok"]:
        out.print(f"audit chain intact: {data['entries']} entries")
    else:
        for problem in data["problems"]:
            err.print(f"[bold red]{problem['kind']}:[/] {problem['message']}")
        err.print(f"audit chain BROKEN ({len(data['problems'])} problem(s))")
    if not data["ok"]:
        raise typer.Exit(1)
