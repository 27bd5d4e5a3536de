"""``hybridai model remote``: serve a model from another v2 server (KServe, Triton) instead.

The credential is named, never given: ``--secret env:NAME`` (a variable of the cloud process)
or ``--secret file:/path`` (a file on the cloud's machine), so it never lands in the metadata
store, the audit log, a shell history or an API answer.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, out, print_json

app = typer.Typer(
    help="Serve a model from a remote Open Inference Protocol server.", no_args_is_help=True
)
NameArg = Annotated[str, typer.Argument(help="Model name (as the cloud's v2 API serves it).")]


def _print(info: dict[str, Any]) -> None:
    table = Table(title=f"remote tier of {info['name']}", show_header=False)
    table.add_column("key")
    table.add_column("value")
    for key, value in info["config"].items():
        table.add_row(key, "-" if value is None else str(value))
    state = info.get("state") or {}
    for key in ("breaker", "healthy", "last_error"):
        table.add_row(key, "-" if state.get(key) is None else str(state[key]))
    table.add_row("updated", f"by {info['updated_by']}")
    out.print(table)


@app.command("set")
def set_remote(
    name: NameArg,
    url: Annotated[str, typer.Option(help="Base URL of the v2 server (http:// or https://).")],
    remote_model: Annotated[
        str | None, typer.Option(help="The model's name there (default: the same).")
    ] = None,
    remote_version: Annotated[
        str | None, typer.Option(help="A version to pin there (default: the request's).")
    ] = None,
    auth: Annotated[str, typer.Option(help="none, bearer or header.")] = "none",
    auth_header: Annotated[
        str | None, typer.Option(help="auth=header: the header name, e.g. X-Api-Key.")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="Where the credential is: env:NAME or file:/path.")
    ] = None,
    ca_file: Annotated[
        str | None, typer.Option(help="CA bundle on the cloud's machine to verify the server.")
    ] = None,
    client_cert: Annotated[
        str | None, typer.Option(help="Client certificate on the cloud's machine (mTLS).")
    ] = None,
    client_key: Annotated[str | None, typer.Option(help="Its private key.")] = None,
    verify: Annotated[bool, typer.Option(help="Verify the server's certificate.")] = True,
    timeout: Annotated[
        float, typer.Option(help="Seconds one request may take, retries included.")
    ] = 10.0,
    retries: Annotated[int, typer.Option(help="Retries on connection errors and 503.")] = 2,
    breaker_failures: Annotated[
        int, typer.Option(help="Consecutive failures that open the circuit breaker.")
    ] = 3,
    breaker_cooldown: Annotated[
        float, typer.Option(help="Seconds an open breaker refuses at once.")
    ] = 5.0,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Forward NAME's v2 requests to a remote server (needs the operate permission)."""
    body = {
        "url": url,
        "remote_model": remote_model,
        "remote_version": remote_version,
        "auth": auth,
        "auth_header": auth_header,
        "secret": secret,
        "ca_file": ca_file,
        "client_cert": client_cert,
        "client_key": client_key,
        "verify": verify,
        "timeout_s": timeout,
        "retries": retries,
        "breaker_failures": breaker_failures,
        "breaker_cooldown_s": breaker_cooldown,
    }
    info = call(cloud, token, "PUT", f"/api/v1/models/{name}/remote", json=body)
    if as_json:
        print_json(info)
    else:
        out.print(f"{name} is now served by {info['config']['url']}")


@app.command("show")
def show_remote(
    name: Annotated[str | None, typer.Argument(help="Model name; none: every remote tier.")] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A model's remote tier with its breaker and health, or all of them."""
    if name is None:
        infos = call(cloud, token, "GET", "/api/v1/remote-tiers")
        if as_json:
            print_json(infos)
            return
        table = Table(title="remote tiers")
        for col in ("model", "url", "remote model", "breaker", "healthy"):
            table.add_column(col)
        for info in infos:
            state = info.get("state") or {}
            table.add_row(
                info["name"],
                info["config"]["url"],
                info["config"]["remote_model"] or info["name"],
                str(state.get("breaker", "-")),
                str(state.get("healthy", "-")),
            )
        out.print(table)
        return
    info = call(cloud, token, "GET", f"/api/v1/models/{name}/remote")
    if as_json:
        print_json(info)
    else:
        _print(info)


@app.command("unset")
def unset_remote(
    name: NameArg,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Serve NAME from the cloud's own runtime again (needs the operate permission)."""
    call(cloud, token, "DELETE", f"/api/v1/models/{name}/remote")
    out.print(f"{name} is served by the cloud's own runtime again")
