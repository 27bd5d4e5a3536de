"""``hybridai doctor``: check a local install, like ``iotedge check``, each failure with its fix."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from hybridai.cli._api import JsonOpt, out, print_json
from hybridai.cli._checks import Check, exit_code
from hybridai.cli._options import build, settings_options
from hybridai.cloud.settings import CloudSettings
from hybridai.edge.settings import EdgeSettings

app = typer.Typer(
    help="Check a local edge or cloud install: ports, disk, certificates, clock, links, stores. "
    "Exits 1 when a check fails.",
    no_args_is_help=True,
)
_STYLE = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]fail[/]"}
_EDGE_FIELDS = [
    "cloud_url",
    "ca_file",
    "device_id",
    "data_dir",
    "host",
    "port",
    "peer_port",
    "max_clock_skew_s",
    "mqtt_url",
    "mqtt_ca_file",
]
_CLOUD_FIELDS = ["data_dir", "database_url", "blob_url", "lake_url", "host", "port"]


def report(title: str, checks: list[Check], as_json: bool) -> None:
    """The checks as a table (or JSON); exit 1 when any failed."""
    if as_json:
        print_json(
            {"role": title, "ok": exit_code(checks) == 0, "checks": [c.as_json() for c in checks]}
        )
    else:
        table = Table(title=f"hybridai doctor: {title}")
        for column in ("check", "result", "detail", "fix"):
            table.add_column(column)
        for check in checks:
            table.add_row(
                check.name, _STYLE[check.verdict], escape(check.detail), escape(check.fix)
            )
        out.print(table)
        failures = sum(c.verdict == "fail" for c in checks)
        warnings = sum(c.verdict == "warn" for c in checks)
        out.print(
            f"{failures} failed, {warnings} warned, {len(checks) - failures - warnings} passed"
        )
    if exit_code(checks):
        raise typer.Exit(1)


@app.command()
@settings_options(EdgeSettings, fields=_EDGE_FIELDS, rename={"cloud_url": "--cloud"})
def edge(as_json: JsonOpt = False, *, given: dict[str, Any]) -> None:
    """Check this machine's edge install and its links; exit 1 when a check fails.

    Data dir and disk, ports, CA and device certificate, enrollment, the cloud (the exact TLS
    or HTTP error, clock skew, device access) and the MQTT broker. Reads the settings of
    `hybridai edge run` (flags, HYBRIDAI_EDGE_*, config.toml).
    """
    from hybridai.cli._doctor_edge import edge_checks

    report("edge", edge_checks(build(EdgeSettings, given)), as_json)


@app.command()
@settings_options(CloudSettings, fields=_CLOUD_FIELDS)
def cloud(as_json: JsonOpt = False, *, given: dict[str, Any]) -> None:
    """Check this machine's cloud install; exit 1 when a check fails.

    Disk, database (reachable, migrated to head), blob store and lake, PKI files and their
    expiry, and that the listener speaks TLS 1.3 only. Reads the settings of `hybridai cloud
    serve` (flags, HYBRIDAI_CLOUD_*, config.toml).
    """
    from hybridai.cli._doctor_cloud import cloud_checks

    report("cloud", cloud_checks(build(CloudSettings, given), time.time()), as_json)
