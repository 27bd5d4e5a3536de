"""``hybridai edge``: run an edge agent, look at one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from hybridai.cli._api import JsonOpt, err, fail, out, print_json
from hybridai.cli._extras import require
from hybridai.cli._loops import loops_table
from hybridai.cli._options import build, epilog, secret_names, settings_options
from hybridai.edge.settings import EdgeSettings

app = typer.Typer(help="Run and inspect edge agents.", no_args_is_help=True)


_EDGE_FLAGS = {"cloud_url": "--cloud", "bundle_file": "--bundle"}
_EDGE_SECRETS = secret_names(EdgeSettings, allowed=["enroll_token"])


@app.command(
    epilog=epilog(EdgeSettings, "Secrets (environment or config.toml only):", _EDGE_SECRETS)
)
@settings_options(EdgeSettings, rename=_EDGE_FLAGS, allow_secrets=["enroll_token"])
def run(
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    *,
    given: dict[str, Any],
) -> None:
    """Run an edge agent: v2 inference, ingest, sync and desired state against the cloud.

    Every setting below is also read from its HYBRIDAI_EDGE_* variable, .env and the edge
    table of config.toml (see docs/settings.md); a flag wins over all of them.
    """
    require("edge")
    from hybridai.edge.agent import EdgeAgent
    from hybridai.edge.app import create_app
    from hybridai.edge.instance_lock import DataDirLocked
    from hybridai.edge.models.bundle import BundleError, read_bundle
    from hybridai.edge.store.crypto import StoreKeyError
    from hybridai.link.transport import server
    from hybridai.observability import logs

    settings = build(EdgeSettings, given)
    try:
        logs.setup()  # HYBRIDAI_LOG_FORMAT (text, json) and HYBRIDAI_LOG_LEVEL
    except ValueError as exc:
        raise fail(str(exc)) from None
    _refuse_bad_config(settings)
    if settings.bundle_file is not None:
        try:
            read_bundle(settings.bundle_file)  # refuse a bad bundle here, not inside the server
        except BundleError as exc:
            raise fail(str(exc)) from None

    try:
        agent = EdgeAgent(settings)
    except (StoreKeyError, DataDirLocked, ValueError, OSError) as exc:
        raise fail(f"cannot start the edge agent: {exc}") from None
    err.print(
        f"[green]hybridai edge[/] {settings.device_id} on http://{settings.host}:{settings.port}"
        f"  peers: https://{settings.host}:{settings.peer_port or settings.port + 1}"
        f"  cloud: {settings.cloud_url}"
    )
    if settings.lan_auth == "open":
        err.print(
            "[bold red]LAN API OPEN[/] (HYBRIDAI_EDGE_LAN_AUTH=open): anyone on the network may "
            "ingest, infer and read status; for lab benches only"
        )
    if settings.ca_file is None and not agent.identity.stored_ca_file.exists():
        err.print("[yellow]no --ca-file:[/] the cloud's certificate must chain to a system CA")
    edge_server = server(create_app(agent), settings.host, settings.port, log_level=log_level)

    def stop() -> None:
        edge_server.should_exit = True

    agent.on_fatal = stop  # e.g. the cloud refused the enrollment token for good
    edge_server.run()
    if agent.fatal is not None:
        raise fail(agent.fatal)


def _refuse_bad_config(settings: Any) -> None:
    """Exit with what to do when no retry could make ``settings`` work."""
    from hybridai.edge.startup_checks import config_problems

    problems = config_problems(settings, time.time())
    if problems:
        raise fail("cannot start the edge agent:\n  " + "\n  ".join(problems))


@app.command()
def status(
    url: Annotated[str, typer.Option(help="Edge agent base URL.")] = "http://127.0.0.1:8500",
    as_json: JsonOpt = False,
) -> None:
    """Show an edge agent's status: models, backlog, sync, placement, loops, MQTT, schemas."""
    try:
        answer = httpx.get(f"{url}/api/v1/status", timeout=5)
        data = answer.json()
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the edge agent at {url}: {exc}") from None
    if answer.status_code in (401, 403):  # the edge wants its site's key
        raise fail(
            f"the edge refused: {data.get('error')} (give the key in the URL: "
            "--url http://lan:KEY@HOST:PORT)"
        )
    if as_json:
        print_json(data)
        return
    table = Table(title=f"edge {data['device_id']}")
    table.add_column("what")
    table.add_column("value")
    for m in data["models"]:
        on = f" on {m['provider']}" if m.get("provider") else ""
        table.add_row(
            f"model {m['name']}", f"v{m['version']} {m['state']}{on} {m.get('error') or ''}"
        )
    store = dict(data["store"])
    streams = store.pop("streams", {})
    for key, value in {**store, **data["inference"]}.items():
        table.add_row(key, str(value))
    table.add_row("cloud reachable", str(data["cloud_reachable"]))
    table.add_row("enrollment", str(data.get("enrollment", "-")))
    skew = data.get("clock_skew_s")
    table.add_row("clock skew", "not yet measured" if skew is None else f"{skew:+.1f} s")
    if data.get("clock_hold"):
        table.add_row("retention held", f"[yellow]{escape(data['clock_hold'])}[/]")
    if data.get("last_error"):
        table.add_row("last error", f"[red]{escape(data['last_error'])}[/]")
    out.print(table)
    if streams:
        out.print(stream_table(streams))
    if data.get("loops"):
        out.print(loops_table(data["loops"]))
    if data.get("mqtt"):
        out.print(mqtt_table(data["mqtt"]))
    if data.get("stream_schemas"):
        out.print(schema_table(data["stream_schemas"]))
    if data.get("settings"):
        out.print(settings_table(data["settings"], data.get("settings_error")))


def settings_table(settings: dict[str, Any], error: str | None) -> Table:
    """The settings the edge runs with, each from its own (local) settings or the cloud's."""
    table = Table(title="settings")
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for key, applied in sorted(settings.items()):
        value = applied["value"]
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        table.add_row(key, escape(shown), applied["source"])
    if error:
        table.add_row("[red]not applied[/]", escape(error), "cloud")
    return table


def mqtt_table(mqtt: dict[str, Any]) -> Table:
    """MQTT ingest since the agent started: the broker link, what came in, where it went."""
    table = Table(title="mqtt ingest")
    table.add_column("what")
    table.add_column("value")
    since = mqtt.get("connected_since")
    link = f"connected for {time.time() - since:.0f}s" if since else "disconnected"
    table.add_row("broker", link)
    table.add_row("reconnects / disconnects", f"{mqtt['reconnects']} / {mqtt['disconnects']}")
    table.add_row("last error", escape(mqtt.get("last_error") or "-"))
    table.add_row("messages received", str(mqtt["messages_received"]))
    table.add_row("records stored", str(mqtt["records_stored"]))
    table.add_row("records duplicate", str(mqtt["records_duplicate"]))
    reasons = ", ".join(f"{k} {v}" for k, v in mqtt["dead_lettered_by_reason"].items() if v)
    parked = str(mqtt["messages_dead_lettered"]) + (f" ({reasons})" if reasons else "")
    table.add_row("dead-lettered", parked)
    table.add_row("store failures (retried)", str(mqtt["store_failures"]))
    return table


def schema_table(schemas: dict[str, Any]) -> Table:
    """The stream schemas the cloud declares for this edge: applied, or refused and why."""
    table = Table(title="declared stream schemas")
    for column in ("stream", "state", "enforced fields", "reason"):
        table.add_column(column)
    for stream, state in sorted(schemas.items()):
        enforced = state.get("enforced") or {}
        required = set(enforced.get("required", []))
        fields = ", ".join(
            f"{name}:{kind}{' (required)' if name in required else ''}"
            for name, kind in sorted(enforced.get("fields", {}).items())
        )
        if enforced.get("closed"):
            fields += " (closed)"
        table.add_row(
            stream,
            "applied" if state["applied"] else "[red]refused[/]",
            fields or "-",
            escape(state.get("error") or ""),
        )
    return table


_STREAM_COLUMNS = (
    ("priority", "priority"),
    ("ingested", "records_ingested"),
    ("dedup", "records_deduplicated"),
    ("compressed", "records_compressed"),
    ("stored", "records_stored"),
    ("bytes", "bytes_stored"),
    ("backlog", "backlog_records"),
    ("oldest s", "oldest_unsynced_age_s"),
    ("synced", "records_synced"),
    ("sync B/s", "sync_bytes_per_s"),
    ("sync rec/s", "sync_records_per_s"),
    ("evicted synced", "records_evicted_synced"),
    ("evicted unsynced", "records_evicted_unsynced"),
)


def stream_table(streams: dict[str, dict[str, object]]) -> Table:
    """The data path per stream (one column each): what came in, is kept, left, was evicted."""
    table = Table(title="streams")
    table.add_column("")
    names = sorted(streams)
    for name in names:
        table.add_column(name, justify="right")
    for title, key in _STREAM_COLUMNS:
        cells = []
        for name in names:
            value = streams[name].get(key)
            cells.append(
                "-" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)
            )
        table.add_row(title, *cells)
    return table


@app.command("store-key")
def store_key(
    path: Annotated[Path, typer.Argument(help="Key file to create (never overwritten).")],
) -> None:
    """Create a key file (mode 0600) that encrypts an edge store's payloads at rest.

    Pass it as HYBRIDAI_EDGE_STORE_KEY_FILE. Keep a copy: without it the store cannot be read.
    """
    from hybridai.edge.store.crypto import write_key_file

    try:
        write_key_file(path)
    except FileExistsError:
        raise fail(f"{path} exists: pick another path (keys are never overwritten)") from None
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc}") from None
    err.print(f"[green]wrote[/] {path}; start the edge with HYBRIDAI_EDGE_STORE_KEY_FILE={path}")
