"""``hybridai cloud``: run the control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hybridai.cli._api import err, fail

app = typer.Typer(help="Run the cloud control plane.", no_args_is_help=True)


@app.command()
def serve(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the embedded stores [env: HYBRIDAI_CLOUD_DATA_DIR]."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the cloud API (fleet, registry, sync, lake, training, v2 inference)."""
    from hybridai.cloud.app import create_app
    from hybridai.cloud.context import open_cloud
    from hybridai.cloud.settings import CloudSettings
    from hybridai.link.tls import ServerTls
    from hybridai.link.transport import serve as serve_app

    overrides = {k: v for k, v in {"data_dir": data_dir, "host": host, "port": port}.items() if v}
    settings = CloudSettings(**overrides)  # type: ignore[arg-type]
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
def init(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the embedded stores [env: HYBRIDAI_CLOUD_DATA_DIR]."),
    ] = None,
) -> None:
    """Create the platform CA and the cloud's server certificate (kept if they exist).

    The CA key is written mode 0600, encrypted when HYBRIDAI_CLOUD_CA_PASSPHRASE is set;
    extra server names come from HYBRIDAI_CLOUD_TLS_NAMES. `cloud serve` does this too.
    """
    import time

    from hybridai.cloud.settings import CloudSettings
    from hybridai.link.pki import PkiError, init_cloud_pki

    settings = CloudSettings(**({"data_dir": data_dir} if data_dir else {}))  # type: ignore[arg-type]
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
