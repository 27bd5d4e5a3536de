"""The ``hybridai`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hybridai import __version__
from hybridai.cli import (
    _api,
    alerts,
    audit,
    cloud,
    compliance,
    demo,
    doctor,
    edge,
    fleet,
    fleet_status,
    lake,
    login,
    model,
    model_deferral,
    model_lifecycle,
    plan,
    policy,
    rollout,
    site,
    stream,
    token,
    user,
)
from hybridai.cli._extras import run
from hybridai.cli._options import epilog, option
from hybridai.cli._settings import CliSettings
from hybridai.config_file import config_path

app = typer.Typer(
    name="hybridai",
    help="Hybrid AI across edge nodes and a cloud tier: run a fleet, train, deploy, infer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cloud.app, name="cloud")
app.add_typer(edge.app, name="edge")
fleet.app.command("status")(fleet_status.status)
app.add_typer(fleet.app, name="fleet")
app.add_typer(site.app, name="site")
model.app.command("bundle")(model_lifecycle.bundle)
model.app.command("retraining")(model_lifecycle.retraining)
model.app.command("rows")(model_lifecycle.rows)
model.app.command("defer")(model_deferral.defer)
app.add_typer(model.app, name="model")
app.add_typer(rollout.app, name="rollout")
app.add_typer(lake.app, name="lake")
app.add_typer(policy.app, name="policy")
app.add_typer(stream.app, name="stream")
app.add_typer(compliance.app, name="compliance")
app.command("demo")(demo.demo)
app.add_typer(user.app, name="user")
app.add_typer(token.app, name="token")
app.add_typer(audit.app, name="audit")
app.add_typer(alerts.app, name="alerts")
app.add_typer(doctor.app, name="doctor")
app.add_typer(plan.app, name="plan")
app.command("login")(login.login)
app.command("logout")(login.logout)


SETTINGS_HELP = (
    "Settings of every command (flag, else variable, else the cli table of "
    f"{escape(str(config_path()))}, else default; docs/settings.md lists all):"
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback(epilog=epilog(CliSettings, SETTINGS_HELP, CliSettings.model_fields))
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    ca_file: Annotated[Path | None, option(CliSettings, "ca_file", "--ca-file")] = None,
) -> None:
    """Hybrid AI across edge nodes and a cloud tier."""
    _api.ca_file = ca_file


def cli() -> None:
    """The ``hybridai`` program: the app, with a missing extra named instead of a traceback."""
    run(app)
