"""``hybridai rollout``: gradual, watched, reversible rollouts of a model version."""

from __future__ import annotations

import time
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
from hybridai.cli.fleet import parse_tags
from hybridai.orchestrator.rollout import HELD

app = typer.Typer(
    help="Roll model versions out gradually: canary, waves, health gates.", no_args_is_help=True
)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FINAL = ("succeeded", "aborted")


def seconds(text: str | float) -> float:
    """Seconds in ``10``, ``10s``, ``2m`` or ``1h`` (zero allowed: no soak; defaults are floats)."""
    value = str(text).strip().lower()
    unit = _UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    try:
        parsed = float(number) * (unit or 1.0)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a duration: use e.g. 30, 10s, 2m or 1h"
        ) from None
    if parsed < 0:
        raise typer.BadParameter(f"{text!r} is negative")
    return parsed


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _skipped(rollout: dict[str, Any]) -> str:
    count = len(rollout.get("skipped", []))
    return f", {count} skipped" if count else ""


def show(rollout: dict[str, Any]) -> None:
    """A rollout for people: its status, its steps and each updated device's verdict."""
    out.print(
        f"rollout {rollout['rollout_id']}: {rollout['model']} v{rollout['from_version']} -> "
        f"v{rollout['to_version']}  [bold]{rollout['status']}[/bold] (step {rollout['step']}, "
        f"{len(rollout['updated'])}/{len(rollout['devices'])} devices{_skipped(rollout)})  "
        f"{rollout['reason']}"
    )
    verdicts = {v["device_id"]: v for v in rollout["verdicts"]}
    table = Table()
    for col in ("step", "device", "health", "detail"):
        table.add_column(col)
    for step in rollout["steps"]:
        for device in step["devices"]:
            v = verdicts.get(device, {"health": "-", "reason": ""})
            table.add_row(str(step["number"]), device, v["health"], v["reason"])
    if rollout["steps"]:
        out.print(table)
    for skipped in rollout.get("skipped", []):
        out.print(f"  skipped {skipped['device_id']}: {skipped['reason']}")


@app.command()
def start(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="The version to roll out.")],
    sites: Annotated[list[str] | None, typer.Option(help="Target these sites.")] = None,
    kinds: Annotated[list[str] | None, typer.Option(help="Target these device kinds.")] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", help="Target devices with the tag KEY=VALUE (repeat: all must match)."
        ),
    ] = None,
    devices: Annotated[
        list[str] | None, typer.Option(help="Also target these devices, by name.")
    ] = None,
    canary: Annotated[float, typer.Option(help="Share of the target in the canary.")] = 0.34,
    step: Annotated[float, typer.Option(help="Share of the target added per step.")] = 0.33,
    soak: Annotated[
        float, typer.Option(parser=seconds, help="Healthy time before each next step.")
    ] = 10.0,
    abort_unhealthy: Annotated[
        float, typer.Option(help="Abort above this share of unhealthy updated devices.")
    ] = 0.05,
    device_timeout: Annotated[
        float, typer.Option(parser=seconds, help="A device silent this long is unhealthy.")
    ] = 60.0,
    max_error_rate: Annotated[float, typer.Option(help="Health gate: error rate.")] = 0.05,
    max_p99_ms: Annotated[float | None, typer.Option(help="Health gate: p99 latency.")] = None,
    min_requests: Annotated[
        int, typer.Option(min=1, help="Requests each updated device must serve to count.")
    ] = 20,
    allow_idle: Annotated[
        bool,
        typer.Option(
            "--allow-idle", help="Accept updated devices that serve too few requests as healthy."
        ),
    ] = False,
    traffic_timeout: Annotated[
        float,
        typer.Option(parser=seconds, help="A step still short of traffic after this long is held."),
    ] = 600.0,
    wait: Annotated[
        bool,
        typer.Option(help="Follow it until it succeeds (exit 0), aborts or is held (exit 1)."),
    ] = False,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start rolling VERSION out: a canary first, then waves while the devices stay healthy.

    --sites, --kinds and --tag narrow the target together (a device must match each one
    given); --devices adds devices by name; none of them: the whole fleet. Devices that
    cannot run the version (capabilities) are skipped, with the reason, and keep theirs.
    An updated device counts as healthy only after serving --min-requests requests of the
    version; a step short of that traffic after --traffic-timeout is held (paused) until an
    operator resumes or aborts it. --allow-idle accepts idle devices instead.
    """
    target = {
        "sites": _split(sites),
        "kinds": _split(kinds),
        "tags": parse_tags(tag),
        "devices": _split(devices),
    }
    body = {
        "model": model,
        "version": version,
        "target": target,
        "canary_share": canary,
        "step_share": step,
        "soak_s": soak,
        "abort_unhealthy_share": abort_unhealthy,
        "device_timeout_s": device_timeout,
        "traffic_timeout_s": traffic_timeout,
        "gates": {
            "max_error_rate": max_error_rate,
            "max_p99_ms": max_p99_ms,
            "min_requests": min_requests,
            "allow_idle": allow_idle,
        },
    }
    rollout = call(cloud, token, "POST", "/api/v1/rollouts", json=body)
    if wait:
        rollout = _follow(cloud, token, rollout)
    if as_json:
        print_json(rollout)
    else:
        show(rollout)
    if wait and rollout["status"] != "succeeded":  # --wait: the exit status says how it ended
        raise fail(f"rollout {rollout['rollout_id']} {rollout['status']}: {rollout['reason']}")


def _follow(cloud: str, token: str | None, rollout: dict[str, Any]) -> dict[str, Any]:
    shown = None
    while rollout["status"] not in _FINAL and not rollout["reason"].startswith(HELD):
        line = (rollout["status"], rollout["step"], rollout["reason"])
        if line != shown:
            out.print(f"  {rollout['status']}, step {rollout['step']}: {rollout['reason']}")
            shown = line
        time.sleep(1.0)
        rollout = call(cloud, token, "GET", f"/api/v1/rollouts/{rollout['rollout_id']}")
    return rollout


@app.command()
def status(
    rollout_id: Annotated[str | None, typer.Argument(help="Rollout id (default: all).")] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one rollout in detail, or list them all."""
    if rollout_id:
        rollout = call(cloud, token, "GET", f"/api/v1/rollouts/{rollout_id}")
        if as_json:
            print_json(rollout)
        else:
            show(rollout)
        return
    rollouts = call(cloud, token, "GET", "/api/v1/rollouts")
    if as_json:
        print_json(rollouts)
        return
    table = Table(title="rollouts")
    for col in ("id", "model", "from", "to", "status", "step", "devices", "reason"):
        table.add_column(col)
    for r in rollouts:
        table.add_row(
            r["rollout_id"],
            r["model"],
            r["from_version"],
            r["to_version"],
            r["status"],
            str(r["step"]),
            f"{len(r['updated'])}/{len(r['devices'])}{_skipped(r)}",
            r["reason"][:80],
        )
    out.print(table)


def _control(action: str, rollout_id: str, cloud: str, token: str | None, as_json: bool) -> None:
    rollout = call(cloud, token, "POST", f"/api/v1/rollouts/{rollout_id}/{action}")
    if as_json:
        print_json(rollout)
    elif rollout["status"] == "aborted" and action != "abort":
        raise fail(f"rollout {rollout_id} aborted: {rollout['reason']}")
    else:
        show(rollout)


@app.command()
def pause(
    rollout_id: Annotated[str, typer.Argument(help="Rollout id.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop growing; updated devices keep the new version, health still aborts."""
    _control("pause", rollout_id, cloud, token, as_json)


@app.command()
def resume(
    rollout_id: Annotated[str, typer.Argument(help="Rollout id.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue a paused rollout; the current step's timeouts and soak restart."""
    _control("resume", rollout_id, cloud, token, as_json)


@app.command()
def abort(
    rollout_id: Annotated[str, typer.Argument(help="Rollout id.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Abort and roll every device back to the version it ran before."""
    _control("abort", rollout_id, cloud, token, as_json)
