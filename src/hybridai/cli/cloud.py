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
    from hybridai.link.transport import serve as serve_app

    overrides = {k: v for k, v in {"data_dir": data_dir, "host": host, "port": port}.items() if v}
    settings = CloudSettings(**overrides)  # type: ignore[arg-type]
    try:
        cloud = open_cloud(settings)
    except Exception as exc:
        raise fail(f"cannot open the cloud's stores: {exc}") from None
    err.print(
        f"[green]hybridai cloud[/] on http://{settings.host}:{settings.port}  "
        f"metadata: {settings.resolved_database_url().split('@')[-1]}  "
        f"admin token: {settings.admin_token_path}"
    )
    serve_app(create_app(cloud), settings.host, settings.port, log_level=log_level)
