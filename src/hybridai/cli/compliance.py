"""``hybridai compliance``: check the running platform against its security controls."""

from __future__ import annotations

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, out, print_json

app = typer.Typer(help="Compliance: check the running configuration.", no_args_is_help=True)
_STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]fail[/]", "unknown": "[yellow]unknown[/]"}


@app.command()
def report(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Pass/fail per control; exits 1 when any control fails.

    Controls: TLS 1.3 only, MFA for admins and operators, audit chain, device certificates,
    devices seen, a policy per lake stream, signed models.
    """
    data = call(cloud, token, "GET", "/api/v1/compliance/report")
    if as_json:
        print_json(data)
    else:
        table = Table(title="compliance report")
        table.add_column("control")
        table.add_column("status")
        table.add_column("detail")
        for c in data["controls"]:
            table.add_row(c["title"], _STYLE.get(c["status"], c["status"]), c["detail"])
        out.print(table)
    if not data["passed"]:
        raise typer.Exit(1)
