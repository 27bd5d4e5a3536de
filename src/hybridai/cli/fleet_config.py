"""``hybridai fleet config``: edge settings for the fleet, a site, a tag or a device."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

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

app = typer.Typer(
    help="Edge settings per fleet, site, tag or device (most specific wins).",
    no_args_is_help=True,
)

FleetOpt = Annotated[bool, typer.Option("--fleet", help="The whole fleet's level.")]
SiteOpt = Annotated[str | None, typer.Option("--site", help="A site's level, e.g. plant-a.")]
TagOpt = Annotated[str | None, typer.Option("--tag", help="A tag's level, KEY=VALUE, e.g. line=3.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="A device's level, e.g. gw-1.")]


def scope_of(fleet: bool, site: str | None, tag: str | None, device: str | None) -> str:
    """The API's scope (``fleet``, ``site:S``, ``tag:k=v``, ``device:D``) from one option."""
    given = [
        s
        for s in (
            "fleet" if fleet else None,
            None if site is None else f"site:{site}",
            None if tag is None else f"tag:{tag}",
            None if device is None else f"device:{device}",
        )
        if s is not None
    ]
    if len(given) != 1:
        raise fail("give exactly one of --fleet, --site SITE, --tag KEY=VALUE, --device DEVICE")
    return given[0]


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value is JSON when it parses (numbers, objects), else a string.

    ``stream_priorities.telemetry=low`` sets one stream of a per-stream setting.
    """
    body: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise fail(f"{item!r} is not KEY=VALUE, e.g. sync_bandwidth_bytes_per_s=20000")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        field, _, stream = key.partition(".")
        if stream:
            body.setdefault(field, {})[stream] = value
        else:
            body[field] = value
    return body


def _show(value: Any) -> str:
    return escape(value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def settings_table(title: str, settings: dict[str, Any], sources: dict[str, str]) -> Table:
    """One row per setting (per stream for the per-stream ones) and where it came from."""
    table = Table(title=title)
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for key, source in sources.items():
        field, _, stream = key.partition(".")
        value = settings.get(field)
        if stream and isinstance(value, dict):
            value = value.get(stream)
        table.add_row(key, _show(value), source)
    return table


@app.command("set")
def set_settings(
    assignments: Annotated[
        list[str], typer.Argument(help="KEY=VALUE ..., e.g. sync_bandwidth_bytes_per_s=20000.")
    ],
    fleet: FleetOpt = False,
    site: SiteOpt = None,
    tag: TagOpt = None,
    device: DeviceOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set edge settings at one level; devices apply them with their next desired state."""
    scope = scope_of(fleet, site, tag, device)
    body = parse_assignments(assignments)
    data = call(cloud, token, "PATCH", f"/api/v1/fleet-config/{quote(scope, safe=':=')}", json=body)
    if as_json:
        print_json(data)
        return
    out.print(f"{scope}: " + ", ".join(f"{k}={_show(v)}" for k, v in data["settings"].items()))


@app.command("unset")
def unset_settings(
    keys: Annotated[
        list[str] | None,
        typer.Argument(help="Settings to unset (none: all of the level's), e.g. sync_window."),
    ] = None,
    fleet: FleetOpt = False,
    site: SiteOpt = None,
    tag: TagOpt = None,
    device: DeviceOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Unset settings at one level: the next less specific level's value applies again."""
    scope = scope_of(fleet, site, tag, device)
    path = f"/api/v1/fleet-config/{quote(scope, safe=':=')}"
    data = call(cloud, token, "DELETE", path, params={"key": list(keys or [])})
    if as_json:
        print_json(data)
    elif data is None:
        out.print(f"{scope}: nothing set at this level")
    else:
        out.print(f"{scope}: " + ", ".join(f"{k}={_show(v)}" for k, v in data["settings"].items()))


@app.command("show")
def show(
    device: DeviceOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The effective settings of a device (or of the fleet) and the level each came from."""
    params = {} if device is None else {"device": device}
    data = call(cloud, token, "GET", "/api/v1/fleet-config/effective", params=params)
    if device is None:
        data = {**data, "levels": call(cloud, token, "GET", "/api/v1/fleet-config")}
    if as_json:
        print_json(data)
        return
    title = f"settings of {device}" if device else "settings of the fleet"
    out.print(settings_table(title, data["settings"], data["sources"]))
    for level in data.get("levels", []):
        name = level["level"] + (f":{level['name']}" if level["name"] else "")
        shown = ", ".join(f"{k}={_show(v)}" for k, v in level["settings"].items())
        out.print(f"{name}: {shown} (by {escape(level['updated_by'])})")
