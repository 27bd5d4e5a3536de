"""``hybridai model``: train, upload, list, show and deploy model versions."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

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

app = typer.Typer(help="Train, register and deploy models.", no_args_is_help=True)


def wait_for_run(cloud: str, token: str | None, run_id: str, timeout_s: float) -> dict[str, Any]:
    """Follow a training run to its end, with a spinner."""
    deadline = time.monotonic() + timeout_s
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err
    ) as progress:
        progress.add_task(f"training run {run_id}", total=None)
        while True:
            run: dict[str, Any] = call(cloud, token, "GET", f"/api/v1/training-runs/{run_id}")
            if run["status"] != "running":
                return run
            if time.monotonic() > deadline:
                raise fail(f"training run {run_id} still running after {timeout_s:.0f}s")
            time.sleep(0.5)


@app.command()
def train(
    spec: Annotated[
        Path | None,
        typer.Option(help="Training spec as JSON (model_name, query, features, label, ...)."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="A built-in spec instead of --spec: 'predictive-maintenance'."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (overrides the spec's).")] = None,
    deploy: Annotated[bool, typer.Option(help="Make the new version the fleet's.")] = True,
    wait: Annotated[bool, typer.Option(help="Wait for the run to finish.")] = True,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train edge and cloud variants on lake data in the cloud, register, and deploy."""
    if (spec is None) == (preset is None):
        raise fail("give exactly one of --spec FILE or --preset predictive-maintenance")
    if spec is not None:
        try:
            body: dict[str, Any] = json.loads(spec.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise fail(f"cannot read the spec {spec}: {exc}") from None
    elif preset == "predictive-maintenance":
        from hybridai.demo.simulator import pm_training_spec

        body = pm_training_spec().model_dump()
    else:
        raise fail(f"unknown preset '{preset}'; the built-in one is 'predictive-maintenance'")
    if name:
        body["model_name"] = name
    body["deploy"] = deploy
    run = call(cloud, token, "POST", "/api/v1/training-runs", json=body)
    if wait:
        run = wait_for_run(cloud, token, run["run_id"], timeout_s=1800)
    if as_json:
        print_json(run)
    elif run["status"] == "failed":
        raise fail(f"training run {run['run_id']} failed: {run['error']}")
    else:
        out.print(f"run {run['run_id']}: {run['status']}, version {run.get('version')}")
        for variant, metrics in (run.get("metrics") or {}).items():
            shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
            out.print(f"  {variant}: {shown}")


@app.command()
def upload(
    name: Annotated[str, typer.Argument(help="Model name.")],
    edge: Annotated[Path | None, typer.Option(help="ONNX file of the edge variant.")] = None,
    cloud_variant: Annotated[
        Path | None, typer.Option("--cloud-variant", help="ONNX file of the cloud variant.")
    ] = None,
    metrics: Annotated[str, typer.Option(help="Metrics as JSON.")] = "{}",
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a new version from ONNX files."""
    files = {v: p.read_bytes() for v, p in (("edge", edge), ("cloud", cloud_variant)) if p}
    if not files:
        raise fail("give --edge FILE and/or --cloud-variant FILE")
    info = call(
        cloud,
        token,
        "POST",
        f"/api/v1/models/{name}/versions",
        files={v: (f"{v}.onnx", data, "application/octet-stream") for v, data in files.items()},
        data={"metrics": metrics},
    )
    if as_json:
        print_json(info)
    else:
        out.print(f"registered {name} v{info['version']}")


@app.command("list")
def list_models(
    cloud: CloudOpt = DEFAULT_CLOUD, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List models, their versions and the deployed one."""
    data = call(cloud, token, "GET", "/api/v1/models")
    if as_json:
        print_json(data)
        return
    table = Table(title="models")
    for col in ("name", "versions", "deployed"):
        table.add_column(col)
    for m in data:
        table.add_row(m["name"], ", ".join(m["versions"]), m.get("deployed_version") or "-")
    out.print(table)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Show one version: artifacts, metrics, lineage."""
    print_json(call(cloud, token, "GET", f"/api/v1/models/{name}/versions/{version}"))


@app.command()
def deploy(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to run on the fleet.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Make VERSION the version every edge runs (edges pull it within seconds)."""
    call(
        cloud, token, "PUT", f"/api/v1/deployments/{name}", json={"name": name, "version": version}
    )
    out.print(f"{name}: fleet desired version is now v{version}")
