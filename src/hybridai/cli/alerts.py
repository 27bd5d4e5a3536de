"""``hybridai alerts``: what the cloud's detectors found, acknowledging it, and self-healing."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, out, print_json

app = typer.Typer(help="Alerts over the fleet's telemetry.", no_args_is_help=True)


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _in_force(action: dict[str, Any]) -> str:
    if not action["active"]:
        return "no"
    held = action.get("lift_at")
    return "yes" if held is None else f"held until {_when(held)}"


def _subject(alert: dict[str, Any]) -> str:
    subject = alert["subject"]
    text = subject.get("device_id") or subject.get("site") or "fleet"
    return text + (f" / {subject['model']}" if subject.get("model") else "")


@app.command("list")
def list_alerts(
    state: Annotated[
        str | None, typer.Option(help="firing, suppressed or resolved (default: all).")
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Alerts, newest change first."""
    params = {"state": state} if state else {}
    data = call(cloud, token, "GET", "/api/v1/alerts", params=params)
    if as_json:
        print_json(data)
        return
    if not data:
        out.print("no alerts" + (f" {state}" if state else ""))
        return
    table = Table(title="alerts")
    for column in ("id", "state", "severity", "kind", "subject", "since", "seen", "summary"):
        table.add_column(column)
    for alert in data:
        table.add_row(
            alert["alert_id"][:12],
            alert["state"] + (" (acked)" if alert.get("acked_at") else ""),
            alert["severity"],
            alert["kind"],
            _subject(alert),
            _when(alert["started_at"]),
            f"{alert['occurrences']}x",
            alert["summary"],
        )
    out.print(table)


def _resolve(cloud: str, token: str | None, alert_id: str) -> str:
    """A full id from the 12-character prefix the list shows."""
    if len(alert_id) >= 32:
        return alert_id
    ids = [a["alert_id"] for a in call(cloud, token, "GET", "/api/v1/alerts")]
    matches = [i for i in ids if i.startswith(alert_id)]
    return matches[0] if len(matches) == 1 else alert_id


@app.command()
def show(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (or the start `list` shows).")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One alert with its evidence."""
    data = call(cloud, token, "GET", f"/api/v1/alerts/{_resolve(cloud, token, alert_id)}")
    if as_json:
        print_json(data)
        return
    out.print(f"[bold]{data['summary']}[/]")
    out.print(f"  {data['kind']} ({data['severity']}), {data['state']}, on {_subject(data)}")
    out.print(f"  from {_when(data['started_at'])} to {_when(data['ended_at'])} UTC")
    out.print(f"  seen {data['occurrences']} times, last {_when(data['last_seen_at'])} UTC")
    out.print(f"  detector {data['detector']}; evidence:")
    for key, value in data["evidence"].items():
        out.print(f"    {key}: {value}")
    if data.get("acked_at"):
        out.print(f"  acknowledged by {data['acked_by']} at {_when(data['acked_at'])} UTC")
    actions = call(cloud, token, "GET", "/api/v1/healing", params={"alert": data["alert_id"]})
    for action in actions:
        out.print(f"  healing {action['rule']}: {action['action']} {action['state']}: "
                  f"{action['detail']}")  # fmt: skip


@app.command()
def ack(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (or the start `list` shows).")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge an alert: you have seen it (it stays firing until its signal recovers)."""
    data = call(cloud, token, "POST", f"/api/v1/alerts/{_resolve(cloud, token, alert_id)}/ack")
    if as_json:
        print_json(data)
    else:
        out.print(f"acknowledged {data['alert_id']} ({data['kind']} on {_subject(data)})")


@app.command()
def actions(
    alert: Annotated[str | None, typer.Option(help="Only those of this alert (full id).")] = None,
    device: Annotated[str | None, typer.Option(help="Only those on this device.")] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Self-healing actions, newest first: what each rule did, on which alert, in force or not."""
    params = {k: v for k, v in (("alert", alert), ("device", device)) if v}
    data = call(cloud, token, "GET", "/api/v1/healing", params=params)
    if as_json:
        print_json(data)
        return
    if not data:
        out.print("no self-healing actions")
        return
    table = Table(title="self-healing actions")
    for column in ("id", "taken", "rule", "action", "state", "in force", "alert", "subject",
                   "detail"):  # fmt: skip
        table.add_column(column)
    for action in data:
        table.add_row(
            action["action_id"][:12],
            _when(action["taken_at"]),
            action["rule"],
            action["action"],
            action["state"],
            _in_force(action),
            action["alert_id"][:12],
            _subject(action),
            action["detail"],
        )
    out.print(table)


@app.command()
def revert(
    action_id: Annotated[str, typer.Argument(help="The action's full id (`actions --json`).")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Undo a self-healing action: lift its orders (a rollback: start the rollout again)."""
    if len(action_id) < 32:
        ids = [a["action_id"] for a in call(cloud, token, "GET", "/api/v1/healing")]
        matches = [i for i in ids if i.startswith(action_id)]
        action_id = matches[0] if len(matches) == 1 else action_id
    data = call(cloud, token, "POST", f"/api/v1/healing/{action_id}/revert")
    if as_json:
        print_json(data)
    else:
        out.print(f"reverted {data['action_id']} ({data['rule']}: {data['detail']})")


@app.command()
def rules(
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The self-healing rules in force."""
    data = call(cloud, token, "GET", "/api/v1/healing/rules")
    if as_json:
        print_json(data)
        return
    out.print(f"at most {data['max_actions_per_hour']} actions an hour, fleet-wide")
    table = Table(title="self-healing rules")
    for column in ("rule", "when", "action", "min severity", "revert", "limit", "dry run"):
        table.add_column(column)
    for rule in data["rules"]:
        limit = rule["limit"]
        table.add_row(
            rule["name"],
            ", ".join(rule["when"]),
            rule["action"],
            rule["min_severity"],
            rule["revert"],
            f"{limit['max_actions']} / {limit['window_s']:g} s",
            "yes" if rule["dry_run"] else "no",
        )
    out.print(table)
