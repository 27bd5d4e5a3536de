"""``hybridai stream``: declare record schemas per stream, for the fleet or one site."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
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
from hybridai.protocol.streams import FIELD_TYPES

app = typer.Typer(help="Edge streams: the record schemas edges enforce.", no_args_is_help=True)
schema_app = typer.Typer(
    help="Declare stream schemas in the cloud; every edge enforces them on ingest.",
    no_args_is_help=True,
)
app.add_typer(schema_app, name="schema")

SiteOpt = Annotated[
    str | None,
    typer.Option("--site", help="Only this site's devices (default: the whole fleet)."),
]


def parse_fields(items: list[str]) -> dict[str, str]:
    """``["machine:string", "temp:number"]`` as a field -> type map, or a readable exit."""
    fields: dict[str, str] = {}
    for item in items:
        name, sep, kind = item.rpartition(":")
        if not sep or not name or kind not in FIELD_TYPES:
            raise fail(f"--field {item!r}: write NAME:TYPE, TYPE one of {', '.join(FIELD_TYPES)}")
        if name in fields:
            raise fail(f"--field {name!r} is given twice")
        fields[name] = kind
    return fields


def _path(stream: str) -> str:
    return f"/api/v1/streams/{stream}/schema"


def _fields(spec: dict[str, Any]) -> str:
    required = set(spec.get("required") or [])
    text = ", ".join(
        f"{name}:{kind}{' (required)' if name in required else ''}"
        for name, kind in sorted(spec.get("fields", {}).items())
    )
    return (text or "-") + (" [closed]" if spec.get("closed") else "")


@schema_app.command("set")
def set_schema(
    stream: Annotated[str, typer.Argument(help="Stream name (its lake table has the same name).")],
    field: Annotated[
        list[str],
        typer.Option("--field", help=f"NAME:TYPE, TYPE one of {', '.join(FIELD_TYPES)}; repeat."),
    ],
    required: Annotated[
        list[str] | None,
        typer.Option("--required", help="A field every record must carry (not null); repeat."),
    ] = None,
    closed: Annotated[
        bool, typer.Option("--closed", help="Refuse records with fields not declared.")
    ] = False,
    retype: Annotated[
        bool,
        typer.Option(
            "--retype",
            help="Let the declaration win over the lake table's column types: the table is "
            "converted, rows that cannot convert are quarantined.",
        ),
    ] = False,
    site: SiteOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Declare (replace) a stream's schema; edges enforce it from their next desired state.

    Fields may be added later; a declared field's type cannot change (the lake column and the
    records already stored have it). A site's schema replaces the fleet's for that site.
    A lake table a first writer typed otherwise refuses it unless --retype.
    """
    spec = {"fields": parse_fields(field), "required": required or [], "closed": closed}
    params: dict[str, str] = {"site": site} if site else {}
    if retype:
        params["retype"] = "true"
    data = call(cloud, token, "PUT", _path(stream), json=spec, params=params or None)
    if as_json:
        print_json(data)
        return
    where = f"site {data['site']}" if data.get("site") else "the fleet"
    out.print(f"[green]schema set[/] for {data['stream']} ({where}): {escape(_fields(data))}")


@schema_app.command("show")
def show_schema(
    stream: Annotated[str, typer.Argument(help="Stream name (its lake table has the same name).")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a stream's declared schemas and whether each device applied or refused its own."""
    data = call(cloud, token, "GET", _path(stream))
    if as_json:
        print_json(data)
        return
    declared = Table(title=f"stream {data['stream']}: declared schemas")
    for column in ("scope", "fields", "by"):
        declared.add_column(column)
    scopes = ([("fleet", data["fleet"])] if data.get("fleet") else []) + [
        (f"site {site}", spec) for site, spec in sorted(data.get("sites", {}).items())
    ]
    for scope, spec in scopes:
        declared.add_row(scope, escape(_fields(spec)), spec.get("updated_by") or "-")
    if not scopes:
        declared.add_row("-", "none declared: `hybridai stream schema set`", "-")
    out.print(declared)
    if data.get("devices"):
        devices = Table(title="on the devices (last status report)")
        for column in ("device", "state", "enforced", "reason"):
            devices.add_column(column)
        for device, state in sorted(data["devices"].items()):
            devices.add_row(
                device,
                "applied" if state["applied"] else "[red]refused[/]",
                escape(_fields(state.get("enforced") or {})),
                escape(state.get("error") or ""),
            )
        out.print(devices)


@schema_app.command("delete")
def delete_schema(
    stream: Annotated[str, typer.Argument(help="Stream name (its lake table has the same name).")],
    site: SiteOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw a declared schema: edges keep its field types but no longer require or close."""
    params = {"site": site} if site else None
    call(cloud, token, "DELETE", _path(stream), params=params)
    where = f"site {site}" if site else "the fleet"
    if as_json:
        print_json({"stream": stream, "site": site, "deleted": True})
        return
    out.print(f"[green]schema withdrawn[/] for {stream} ({where})")
