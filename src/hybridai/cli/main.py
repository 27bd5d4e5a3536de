"""The ``hybridai`` command line."""

from __future__ import annotations

import typer

from hybridai import __version__
from hybridai.cli import cloud, demo, edge, fleet, lake, model

app = typer.Typer(
    name="hybridai",
    help="Hybrid AI across edge nodes and a cloud tier: run a fleet, train, deploy, infer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cloud.app, name="cloud")
app.add_typer(edge.app, name="edge")
app.add_typer(fleet.app, name="fleet")
app.add_typer(model.app, name="model")
app.add_typer(lake.app, name="lake")
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Hybrid AI across edge nodes and a cloud tier."""
