"""The ``hybridai`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hybridai import __version__
from hybridai.cli import (
    _api,
    audit,
    cloud,
    compliance,
    demo,
    edge,
    fleet,
    lake,
    login,
    model,
    model_lifecycle,
    policy,
    rollout,
    site,
    stream,
    token,
    user,
)

app = typer.Typer(
    name="hybridai",
    help="Hybrid AI across edge nodes and a cloud tier: run a fleet, train, deploy, infer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cloud.app, name="cloud")
app.add_typer(edge.app, name="edge")
app.add_typer(fleet.app, name="fleet")
app.add_typer(site.app, name="site")
model.app.command("bundle")(model_lifecycle.bundle)
model.app.command("retraining")(model_lifecycle.retraining)
model.app.command("rows")(model_lifecycle.rows)
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
app.command("login")(login.login)
app.command("logout")(login.logout)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            envvar="HYBRIDAI_CA_FILE",
            help="Platform CA the cloud's certificate must chain to (default: the local "
            "cloud's .hybridai/cloud/pki/ca.crt, if present).",
        ),
    ] = None,
) -> None:
    """Hybrid AI across edge nodes and a cloud tier."""
    _api.ca_file = ca_file
