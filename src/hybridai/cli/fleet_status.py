"""``hybridai fleet status``: the fleet at a glance, site by site, for people and scripts.

Built on the fleet API (``GET /api/v1/devices``) and, where the cloud has it, the alerts API
(``GET /api/v1/alerts``; absent: no alert column). A device is online while its last report is
younger than ``--offline-after``; its health is the list of what is wrong with it, in words.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from hybridai.cli._api import (
    DEFAULT_CLOUD,
    CloudOpt,
    JsonOpt,
    TokenOpt,
    call,
    credentials,
    out,
    print_json,
    resolve_ca,
)
from hybridai.cli.fleet import parse_duration
from hybridai.link.transport import client


def problems(device: dict[str, Any]) -> list[str]:
    """What is wrong with a device by its registry entry and last report (empty: healthy)."""
    if device.get("revoked"):
        return ["revoked"]
    status = device.get("status")
    if not status:
        return ["never reported"]
    found = [
        f"model {m['name']} v{m['version']} failed"
        for m in status.get("models", [])
        if m.get("state") == "failed"
    ]
    found += [
        f"loop {loop['name']} failing"
        for loop in status.get("loops", [])
        if loop.get("state") == "backing_off"
    ]
    if not status.get("cloud_reachable", True):
        found.append("cloud unreachable")
    if status.get("clock_hold"):
        found.append("clock skew")
    if status.get("enrollment", "enrolled") != "enrolled":
        found.append(f"enrollment {status['enrollment']}")
    mqtt = status.get("mqtt")
    if mqtt is not None and not mqtt.get("connected"):
        found.append("mqtt down")
    if device.get("quarantined_batches"):
        found.append(f"{device['quarantined_batches']} quarantined batches")
    return found


def _alert_counts(alerts: list[dict[str, Any]] | None) -> dict[str, int] | None:
    if alerts is None:
        return None
    counts: dict[str, int] = defaultdict(int)
    for alert in alerts:
        device = alert.get("device_id")
        if device and alert.get("state", "firing") in ("firing", "open", "active"):
            counts[str(device)] += 1
    return counts


def summary(
    devices: list[dict[str, Any]],
    alerts: list[dict[str, Any]] | None,
    now: float,
    offline_after_s: float,
) -> dict[str, Any]:
    """The fleet by site: each device online or not, its versions, health, backlog and clock."""
    counts = _alert_counts(alerts)
    sites: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for device in sorted(devices, key=lambda d: (d["site"], d["device_id"])):
        status = device.get("status") or {}
        seen = device.get("last_seen")
        ago = None if seen is None else max(0.0, now - float(seen))
        sites[device["site"]].append(
            {
                "device_id": device["device_id"],
                "kind": device.get("kind"),
                "online": ago is not None and ago <= offline_after_s and not device.get("revoked"),
                "last_seen": seen,
                "last_seen_s_ago": ago,
                "agent_version": status.get("agent_version"),
                "models": {m["name"]: m["version"] for m in status.get("models", [])},
                "problems": problems(device),
                "backlog_records": (status.get("store") or {}).get("backlog_records"),
                "clock_skew_s": status.get("clock_skew_s"),
                "alerts": None if counts is None else counts.get(device["device_id"], 0),
            }
        )
    return {
        "generated_at": now,
        "offline_after_s": offline_after_s,
        "devices": len(devices),
        "online": sum(d["online"] for site in sites.values() for d in site),
        "sites": [{"site": name, "devices": rows} for name, rows in sorted(sites.items())],
    }


def _alerts(cloud: str, token: str | None) -> list[dict[str, Any]] | None:
    """Open alerts, or None where this cloud has no alerts API (or refuses this caller)."""
    sent, _ = credentials(token)
    try:
        with client(cloud, token=sent, timeout=30.0, verify=resolve_ca()) as http:
            answer = http.get("/api/v1/alerts")
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    body = answer.json()
    items = body.get("alerts", body.get("items")) if isinstance(body, dict) else body
    return items if isinstance(items, list) else None


def _seen(row: dict[str, Any]) -> str:
    ago = row["last_seen_s_ago"]
    if ago is None:
        return "never"
    return f"{ago:.0f}s ago" if ago < 120 else f"{ago / 60:.0f} min ago"


def tables(view: dict[str, Any]) -> list[Table]:
    shown = []
    with_alerts = any(d["alerts"] is not None for s in view["sites"] for d in s["devices"])
    for site in view["sites"]:
        rows = site["devices"]
        online = sum(r["online"] for r in rows)
        table = Table(title=f"site {escape(site['site'])}: {online}/{len(rows)} online")
        columns = ["device", "state", "last seen", "agent", "models", "health", "backlog", "clock"]
        for column in columns + (["alerts"] if with_alerts else []):
            table.add_column(column)
        for r in rows:
            models = ", ".join(f"{n} v{v}" for n, v in sorted(r["models"].items())) or "-"
            health = (
                "[green]ok[/]"
                if not r["problems"]
                else "[red]" + escape(", ".join(r["problems"])) + "[/]"
            )
            skew = r["clock_skew_s"]
            cells = [
                escape(r["device_id"]),
                "[green]online[/]" if r["online"] else "[red]offline[/]",
                _seen(r),
                escape(r["agent_version"] or "-"),
                escape(models),
                health,
                "-" if r["backlog_records"] is None else str(r["backlog_records"]),
                "-" if skew is None else f"{skew:+.1f} s",
            ]
            if with_alerts:
                cells.append(str(r["alerts"]) if r["alerts"] is not None else "-")
            table.add_row(*cells)
        shown.append(table)
    return shown


def status(
    offline_after: Annotated[
        int,
        typer.Option(
            parser=parse_duration,
            help="A device is offline when its last report is older than this: 30s, 5m, 1h.",
        ),
    ] = 30,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.5, help="Seconds between refreshes with --watch.")
    ] = 5.0,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the fleet by site: online or not, last seen, versions, health, backlog, clock, alerts.

    --json prints one object per refresh, for scripts; --watch refreshes until Ctrl-C.
    """
    while True:
        devices = call(cloud, token, "GET", "/api/v1/devices")
        view = summary(devices, _alerts(cloud, token), time.time(), float(offline_after))
        if as_json:
            print_json(view)
        else:
            if watch and out.is_terminal:
                out.clear()
            out.print(f"fleet: {view['online']}/{view['devices']} devices online")
            for table in tables(view):
                out.print(table)
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return
