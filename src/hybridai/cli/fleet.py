"""``hybridai fleet``: enroll devices, see the fleet."""

from __future__ import annotations

import time
from typing import Annotated

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

app = typer.Typer(help="Enroll devices and inspect the fleet.", no_args_is_help=True)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``3600``, ``90s``, ``30m``, ``1h`` or ``7d``."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    if not number.isdigit() or int(number) <= 0:
        raise typer.BadParameter(f"{text!r} is not a duration: use e.g. 3600, 90s, 30m, 1h or 7d")
    return int(number) * (unit or 1)


@app.command("enroll-token")
def enroll_token(
    target: Annotated[str, typer.Argument(help="SITE/DEVICE, e.g. plant-a/edge-1.")],
    ttl: Annotated[
        int,
        typer.Option(
            parser=parse_duration, help="How long the token stays valid: 3600, 30m, 1h, 7d."
        ),
    ] = 3600,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a one-time enrollment token for a device."""
    site, sep, device = target.partition("/")
    if not sep or not site or not device:
        raise fail(f"'{target}' is not SITE/DEVICE, e.g. plant-a/edge-1")
    data = call(
        cloud,
        token,
        "POST",
        "/api/v1/enrollment-tokens",
        json={"site": site, "device_id": device, "ttl_s": ttl},
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


def _evicted(store: dict[str, object]) -> str:
    """Quota evictions, unsynced (data lost) apart from synced (copies already in the lake)."""
    if "records_evicted_synced" not in store:
        return "-"
    return f"{store['records_evicted_unsynced']} unsynced / {store['records_evicted_synced']}"


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
    for col in ("device", "site", "kind", "last seen", "models", "backlog", "synced", "evicted"):
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
            seen,
            models or "-",
            str(store.get("backlog_records", "-")),
            str(store.get("records_synced", "-")),
            _evicted(store),
        )
    out.print(table)
