"""``hybridai policy``: declare and list per-stream data policies."""

from __future__ import annotations

from typing import Annotated, Any

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
)
from hybridai.protocol.policy import DATA_CLASSES

app = typer.Typer(
    help="Data policies: classify fields, pseudonymise, keep restricted data on site, retention.",
    no_args_is_help=True,
)


def _pairs(items: list[str], what: str, number: bool = False) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise fail(f"{what} {item!r}: write NAME=VALUE")
        if number:
            try:
                parsed[key] = float(value)
            except ValueError:
                raise fail(f"{what} {item!r}: the value must be a number of days") from None
        else:
            parsed[key] = value
    return parsed


@app.command("set")
def set_policy(
    stream: Annotated[str, typer.Argument(help="Stream (edge stream / lake table) name.")],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", help=f"FIELD=CLASS, CLASS one of {', '.join(DATA_CLASSES)}; repeat."
        ),
    ] = None,
    classification: Annotated[
        str, typer.Option(help="Class of the whole stream; restricted never leaves the site.")
    ] = "internal",
    default_class: Annotated[str, typer.Option(help="Class of fields not named.")] = "internal",
    personal: Annotated[
        str, typer.Option(help="pseudonymise (keyed hash at the edge) or drop personal fields.")
    ] = "pseudonymise",
    edge_retention: Annotated[
        list[str] | None, typer.Option(help="CLASS=DAYS kept at the edge once synced; repeat.")
    ] = None,
    lake_retention: Annotated[
        list[str] | None, typer.Option(help="CLASS=DAYS kept in the lake; repeat.")
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Declare (replace) a stream's policy; edges apply it from their next desired state."""
    spec = {
        "classification": classification,
        "default_class": default_class,
        "personal": personal,
        "fields": _pairs(field or [], "--field"),
        "edge_retention_days": _pairs(edge_retention or [], "--edge-retention", number=True),
        "lake_retention_days": _pairs(lake_retention or [], "--lake-retention", number=True),
    }
    data = call(cloud, token, "PUT", f"/api/v1/policies/{stream}", json=spec)
    if as_json:
        print_json(data)
        return
    out.print(f"[green]policy set[/] for {data['stream']} ({data['classification']})")


@app.command("list")
def list_policies(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List the declared data policies."""
    data = call(cloud, token, "GET", "/api/v1/policies")
    if as_json:
        print_json(data)
        return
    table = Table(title="data policies")
    for column in ("stream", "class", "fields", "personal", "edge retention", "lake retention"):
        table.add_column(column)
    for p in data:
        fields = ", ".join(f"{k}={v}" for k, v in sorted(p["fields"].items()))
        table.add_row(
            p["stream"],
            p["classification"],
            fields or f"(all {p['default_class']})",
            p["personal"],
            ", ".join(f"{k}={v:g}d" for k, v in p["edge_retention_days"].items()) or "—",
            ", ".join(f"{k}={v:g}d" for k, v in p["lake_retention_days"].items()) or "—",
        )
    out.print(table)
