"""``hybridai cloud``: run the control plane."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hybridai.cli._api import (
    DEFAULT_CLOUD,
    CloudOpt,
    JsonOpt,
    TokenOpt,
    call,
    err,
    fail,
    out,
    print_json,
)
from hybridai.cli._extras import require
from hybridai.cli._loops import loops_table
from hybridai.cli._options import build, epilog, secret_names, settings_options
from hybridai.cloud.settings import CloudSettings

app = typer.Typer(help="Run the cloud control plane.", no_args_is_help=True)


_CLOUD_SECRETS = secret_names(CloudSettings)


@app.command(
    epilog=epilog(CloudSettings, "Secrets (environment or config.toml only):", _CLOUD_SECRETS)
)
@settings_options(CloudSettings)
def serve(
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    *,
    given: dict[str, Any],
) -> None:
    """Serve the cloud API (fleet, registry, sync, lake, training, v2 inference)."""
    require("cloud")
    from hybridai.cloud.app import create_app
    from hybridai.cloud.context import open_cloud
    from hybridai.link.tls import ServerTls
    from hybridai.link.transport import serve as serve_app
    from hybridai.observability import logs

    settings = build(CloudSettings, given)
    try:
        logs.setup()  # HYBRIDAI_LOG_FORMAT (text, json) and HYBRIDAI_LOG_LEVEL
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        cloud = open_cloud(settings)
    except Exception as exc:
        raise fail(f"cannot open the cloud's stores: {exc}") from None
    err.print(
        f"[green]hybridai cloud[/] on https://{settings.host}:{settings.port} (mTLS, TLS 1.3)  "
        f"metadata: {settings.resolved_database_url().split('@')[-1]}  "
        f"admin token: {settings.admin_token_path}  CA: {settings.pki_dir / 'ca.crt'}"
    )
    pki_dir = settings.pki_dir
    tls = ServerTls(pki_dir / "server.crt", pki_dir / "server.key", pki_dir / "ca.crt")
    serve_app(create_app(cloud), settings.host, settings.port, log_level=log_level, tls=tls)


@app.command()
@settings_options(CloudSettings, fields=["data_dir", "database_url"])
def migrate(*, given: dict[str, Any]) -> None:
    """Upgrade the metadata store's schema to this release's newest revision, then exit.

    Run it once per release before the replicas start (the Helm chart's pre-install and
    pre-upgrade Job does). Safe to repeat and to race: it takes a database lock and upgrades
    only what is missing, so `serve`, which does it too, then finds nothing to do.
    """
    require("cloud")
    from hybridai.storage.metadata import create_engine_for
    from hybridai.storage.metadata import migrate as upgrade

    settings = build(CloudSettings, given)
    url = settings.resolved_database_url()
    where = url.split("@")[-1]  # never print a password
    try:
        engine = create_engine_for(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
    except Exception as exc:
        raise fail(f"cannot migrate the metadata store at {where}: {exc}") from None
    err.print(f"[green]metadata store at the newest schema[/]: {where}")


@app.command()
@settings_options(CloudSettings, fields=["data_dir", "tls_names"])
def init(*, given: dict[str, Any]) -> None:
    """Create the platform CA and the cloud's server certificate (kept if they exist).

    The CA key is written mode 0600, encrypted when HYBRIDAI_CLOUD_CA_PASSPHRASE is set;
    extra server names come from HYBRIDAI_CLOUD_TLS_NAMES. `cloud serve` does this too.
    """
    import time

    from hybridai.link.pki import PkiError, init_cloud_pki

    settings = build(CloudSettings, given)
    try:
        pki, created = init_cloud_pki(
            settings.pki_dir, settings.tls_names, time.time(), settings.passphrase()
        )
    except PkiError as exc:
        raise fail(str(exc)) from None
    for path in created:
        err.print(f"[green]created[/] {path}")
    if not created:
        err.print(f"PKI already in place in {settings.pki_dir}; nothing created")
    err.print(f"edges and the CLI trust {pki.ca_cert} (--ca-file)")


@app.command()
def health(
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the cloud's background loops (rollout, retraining): state, restarts, last error.

    Exits 1 while a loop is backing off after a failure, so a probe can alert on it.
    """
    answer = call(cloud, token, "GET", "/api/v1/health")
    if as_json:
        print_json(answer)
    else:
        out.print(f"hybridai cloud {answer['version']}")
        out.print(loops_table(answer["loops"]))
    failing = [loop for loop in answer["loops"] if loop["state"] == "backing_off"]
    if failing:
        listed = "; ".join(f"{loop['name']}: {loop['last_error']}" for loop in failing)
        raise fail(f"failing and retrying: {listed}")
