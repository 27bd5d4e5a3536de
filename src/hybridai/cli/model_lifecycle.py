"""``hybridai model bundle / retraining / rows``, and reading ``pipeline.yaml`` for ``train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
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
    resolve_ca,
    resolve_token,
)
from hybridai.link.transport import client
from hybridai.protocol.lifecycle import RetrainingMode


def pipeline_body(path: Path) -> dict[str, Any]:
    """The TrainingSpec a pipeline.yaml declares, as the JSON body the cloud takes."""
    import yaml

    from hybridai.protocol.pipeline import PipelineError, pipeline_spec

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read the pipeline {path}: {exc}") from None
    try:
        return pipeline_spec(doc).model_dump(mode="json")
    except PipelineError as exc:
        raise fail(f"{path}: {exc}") from None


def _download(cloud: str, token: str | None, path: str) -> bytes:
    try:
        with client(cloud, token=resolve_token(token), timeout=300.0, verify=resolve_ca()) as http:
            response = http.get(path)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the cloud at {cloud} ({type(exc).__name__})") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise fail(f"HTTP {response.status_code}: {message}")
    return response.content


def bundle(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to bundle.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle file to write.")] = Path(
        "bundle.tar"
    ),
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Write an offline bundle: artifacts, signatures, public key, desired state.

    Start an edge from it with no cloud reachable: `hybridai edge run --bundle FILE`.
    """
    data = _download(cloud, token, f"/api/v1/models/{name}/versions/{version}/bundle")
    output.write_bytes(data)
    err.print(f"[green]wrote[/] {output} ({len(data):,} bytes): {name} v{version}")


def retraining(
    name: Annotated[str, typer.Argument(help="Model name.")],
    mode: Annotated[
        str | None,
        typer.Option(help="manual, auto-to-staged or auto-to-production (omit: show)."),
    ] = None,
    psi: Annotated[float | None, typer.Option(help="Feature PSI that triggers.")] = None,
    confidence_shift: Annotated[
        float | None, typer.Option(help="Drop of mean confidence that triggers.")
    ] = None,
    hard_examples: Annotated[
        int | None, typer.Option(help="New hard examples that trigger (0: off).")
    ] = None,
    min_window: Annotated[
        int | None, typer.Option(help="Rows a device must have served to count.")
    ] = None,
    cooldown_s: Annotated[
        float | None, typer.Option(help="Least time between two retrainings.")
    ] = None,
    hard_example_labels: Annotated[
        str | None,
        typer.Option(
            help="Add the model's hard examples to a retraining's rows, labelled by: cloud, "
            "human or human-else-cloud."
        ),
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set when NAME is retrained on drift reported by its edges."""
    path = f"/api/v1/models/{name}/retraining"
    current: dict[str, Any] = call(cloud, token, "GET", path)
    given = {
        "mode": mode,
        "psi_threshold": psi,
        "confidence_shift": confidence_shift,
        "hard_examples": hard_examples,
        "min_window": min_window,
        "cooldown_s": cooldown_s,
        "hard_example_labels": hard_example_labels,
    }
    if mode is not None and mode not in RetrainingMode.__args__:  # type: ignore[attr-defined]
        raise fail("--mode must be manual, auto-to-staged or auto-to-production")
    changes = {k: v for k, v in given.items() if v is not None}
    if changes:
        current = call(cloud, token, "PUT", path, json={**current["policy"], **changes})
    if as_json:
        print_json(current)
        return
    policy = current["policy"]
    out.print(
        f"{name}: {policy['mode']}; PSI > {policy['psi_threshold']}, confidence drop > "
        f"{policy['confidence_shift']}, hard examples >= {policy['hard_examples'] or 'off'}, "
        f"window >= {policy['min_window']}, cool-down {policy['cooldown_s']:.0f}s"
        + (
            f", trains on hard examples labelled by {policy['hard_example_labels']}"
            if policy.get("hard_example_labels")
            else ""
        )
    )
    if current.get("last_reason"):
        out.print(f"last: {current['last_reason']} (run {current.get('last_run_id')})")


def rows(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Parquet file to write.")] = Path(
        "training-rows.parquet"
    ),
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Write the exact lake rows VERSION was trained on (time travel to its table versions)."""
    data = _download(cloud, token, f"/api/v1/models/{name}/versions/{version}/training-rows")
    output.write_bytes(data)
    err.print(f"[green]wrote[/] {output} ({len(data):,} bytes)")
