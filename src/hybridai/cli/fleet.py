"""``hybridai fleet``: enroll devices, see the fleet."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from hybridai.cli import fleet_config, telemetry
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

app = typer.Typer(help="Enroll devices and inspect the fleet.", no_args_is_help=True)
app.add_typer(fleet_config.app, name="config")
app.command("telemetry")(telemetry.telemetry)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int) -> int:
    """Seconds in ``3600``, ``90s``, ``30m``, ``1h`` or ``7d`` (the default arrives as an int)."""
    value = str(text).strip().lower()
    unit = _UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    if not number.isdigit() or int(number) <= 0:
        raise typer.BadParameter(f"{text!r} is not a duration: use e.g. 3600, 90s, 30m, 1h or 7d")
    return int(number) * (unit or 1)


def parse_tags(values: list[str] | None) -> dict[str, str]:
    """``{"line": "3", "zone": "a"}`` from ``--tag line=3 --tag zone=a`` (or ``line=3,zone=a``).

    Only the shape is checked here; the cloud checks keys and values and says what is wrong.
    """
    tags: dict[str, str] = {}
    for value in values or []:
        for item in (v.strip() for v in value.split(",")):
            key, sep, tag = item.partition("=")
            if not item:
                continue
            if not sep or not key.strip() or not tag.strip():
                raise typer.BadParameter(f"{item!r} is not a tag: use KEY=VALUE, e.g. line=3")
            tags[key.strip()] = tag.strip()
    return tags


def show_tags(tags: dict[str, str] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((tags or {}).items())) or "-"


TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", help="A tag KEY=VALUE, e.g. line=3 (repeat it for more)."),
]


@app.command("enroll-token")
def enroll_token(
    target: Annotated[str, typer.Argument(help="SITE/DEVICE, e.g. plant-a/edge-1.")],
    ttl: Annotated[
        int,
        typer.Option(
            parser=parse_duration, help="How long the token stays valid: 3600, 30m, 1h, 7d."
        ),
    ] = 3600,
    tag: TagOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a one-time enrollment token for a device; --tag labels it when it enrolls."""
    site, sep, device = target.partition("/")
    if not sep or not site or not device:
        raise fail(f"'{target}' is not SITE/DEVICE, e.g. plant-a/edge-1")
    data = call(
        cloud,
        token,
        "POST",
        "/api/v1/enrollment-tokens",
        json={"site": site, "device_id": device, "ttl_s": ttl, "tags": parse_tags(tag)},
    )
    if as_json:
        print_json(data)
    else:
        out.print(data["token"])


@app.command()
def revoke(
    device: Annotated[str, typer.Argument(help="The device to revoke, e.g. edge-1.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a device and its certificates; its next request is refused."""
    data = call(cloud, token, "POST", f"/api/v1/devices/{device}/revoke")
    if as_json:
        print_json(data)
    else:
        out.print(
            f"revoked {data['device_id']} (site {data['site']}); re-enroll it with a new token"
        )


@app.command("tag")
def tag_device(
    device: Annotated[str, typer.Argument(help="The device to tag, e.g. edge-1.")],
    add: Annotated[
        list[str] | None,
        typer.Option("--add", help="Set a tag KEY=VALUE (repeat it for more)."),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Remove the tag KEY (repeat it).")
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add or remove a device's tags; rollouts select devices by them (--tag KEY=VALUE)."""
    removed = [k.strip() for value in remove or [] for k in value.split(",") if k.strip()]
    if not add and not removed:
        raise fail("nothing to change: give --add KEY=VALUE and/or --remove KEY")
    body = {"add": parse_tags(add), "remove": removed}
    data = call(cloud, token, "PATCH", f"/api/v1/devices/{device}/tags", json=body)
    if as_json:
        print_json(data)
    else:
        out.print(f"{data['device_id']}: {show_tags(data.get('tags'))}")


def _evicted(store: dict[str, object]) -> str:
    """Quota evictions, unsynced (data lost) apart from synced (copies already in the lake)."""
    if "records_evicted_synced" not in store:
        return "-"
    return f"{store['records_evicted_unsynced']} unsynced / {store['records_evicted_synced']}"


def _mqtt(status: dict[str, Any]) -> str:
    """MQTT ingest at a glance: the broker link and parked messages (- when not configured)."""
    mqtt = status.get("mqtt")
    if not mqtt:
        return "-"
    link = "up" if mqtt.get("connected") else "[red]down[/]"
    parked = mqtt.get("messages_dead_lettered", 0)
    received = mqtt.get("messages_received", 0)
    return f"{link}, {received} in" + (f", {parked} parked" if parked else "")


def _schemas(status: dict[str, Any]) -> str:
    """Declared stream schemas the device refused, by stream (details: stream schema show)."""
    declared = status.get("stream_schemas") or {}
    refused = sorted(stream for stream, state in declared.items() if not state["applied"])
    if refused:
        return "[red]refused:[/] " + ", ".join(refused)
    return "ok" if declared else "-"


def _quarantined(device: dict[str, Any]) -> str:
    """Batches of the device the lake could not take (details: GET /api/v1/quarantine)."""
    count = device.get("quarantined_batches") or 0
    return f"[red]{count}[/]" if count else "-"


@app.command("list")
def list_devices(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List enrolled devices with their last report."""
    data = call(cloud, token, "GET", "/api/v1/devices")
    if as_json:
        print_json(data)
        return
    table = Table(title="fleet")
    columns = ("device", "site", "kind", "tags", "last seen", "models", "backlog", "synced")
    for col in (*columns, "evicted", "mqtt", "schemas", "quarantined", "clock"):
        table.add_column(col)
    now = time.time()
    for d in data:
        status = d.get("status") or {}
        models = ", ".join(f"{m['name']} v{m['version']}" for m in status.get("models", []))
        seen = f"{now - d['last_seen']:.0f}s ago" if d.get("last_seen") else "never"
        store = status.get("store", {})
        table.add_row(
            d["device_id"],
            d["site"],
            d["kind"],
            show_tags(d.get("tags")),
            seen,
            models or "-",
            str(store.get("backlog_records", "-")),
            str(store.get("records_synced", "-")),
            _evicted(store),
            _mqtt(status),
            _schemas(status),
            _quarantined(d),
            _clock(status),
        )
    out.print(table)


def _clock(status: dict[str, Any]) -> str:
    """The device's clock against the cloud's; red when it is off by more than its bound."""
    skew = status.get("clock_skew_s")
    if skew is None:
        return "-"
    text = f"{skew:+.0f} s"
    return f"[red]{text}[/]" if "clock skew" in (status.get("clock_hold") or "") else text
