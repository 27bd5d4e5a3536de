"""``hybridai model``: train, upload, list, show and deploy model versions."""

from __future__ import annotations

import json
import time
from enum import StrEnum
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
from hybridai.cli._calibration import by_split, print_calibration
from hybridai.cli.model_remote import app as remote_app

app = typer.Typer(help="Train, register and deploy models.", no_args_is_help=True)
app.add_typer(remote_app, name="remote")  # serve a model from another v2 server


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
    pipeline: Annotated[
        Path | None,
        typer.Argument(help="pipeline.yaml: dataset query, features, label, model, edge, split."),
    ] = None,
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
    """Train edge and cloud variants on lake data in the cloud, register, and deploy.

    PIPELINE is a YAML file, e.g. (`edge` quantizes the cloud model, or names a smaller family):

    name: pm / dataset: {query: SELECT ...} / features: [a, b] / label: y / group: machine_id /
    model: {family: mlp} / edge: {quantize: dynamic} / edge_budget: {metric: accuracy,
    max_drop: 0.01} / split: {test: 0.25, validation: 0.2, seed: 0} / metrics: [accuracy]
    """
    if sum(x is not None for x in (pipeline, spec, preset)) != 1:
        raise fail(
            "give exactly one of PIPELINE.yaml, --spec FILE.json or --preset predictive-maintenance"
        )
    body: dict[str, Any]
    if pipeline is not None:
        from hybridai.cli.model_lifecycle import pipeline_body

        body = pipeline_body(pipeline)
        deploy = deploy and bool(body.get("deploy", True))
    elif spec is not None:
        try:
            body = json.loads(spec.read_text())
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
    test_data: Annotated[
        Path | None,
        typer.Option(
            help="The model's test rows (Parquet): only their content hashes are kept, so "
            "`model calibrate` refuses them later. Name the --label column or the --features."
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="Label column of --test-data.")] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Feature columns of --test-data, comma-separated (default: all but --label)."
        ),
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a new version from ONNX files."""
    files = {v: p.read_bytes() for v, p in (("edge", edge), ("cloud", cloud_variant)) if p}
    if not files:
        raise fail("give --edge FILE and/or --cloud-variant FILE")
    sent = {v: (f"{v}.onnx", data, "application/octet-stream") for v, data in files.items()}
    form = {"metrics": metrics}
    if test_data is not None:
        sent["test_data"] = ("test.parquet", _read(test_data), "application/octet-stream")
        form.update({k: v for k, v in (("label", label), ("features", features)) if v})
    info = call(cloud, token, "POST", f"/api/v1/models/{name}/versions", files=sent, data=form)
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
        stages = m.get("stages") or {}
        shown = ", ".join(f"{v} ({stages[v]})" if v in stages else v for v in m["versions"])
        table.add_row(m["name"], shown, m.get("deployed_version") or "-")
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


class PolicyName(StrEnum):
    LATENCY = "latency"
    CASCADE = "cascade"
    EDGE_ONLY = "edge-only"
    CLOUD_ONLY = "cloud-only"


@app.command()
def deploy(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to run on the fleet.")],
    policy: Annotated[
        PolicyName | None,
        typer.Option(help="How requests are placed (default: latency, no budget)."),
    ] = None,
    budget_ms: Annotated[
        float | None, typer.Option(help="Latency budget for requests that name none.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Cascade threshold (default: the one `model calibrate` stored)."),
    ] = None,
    input_stream: Annotated[
        str | None,
        typer.Option(
            help="The stream that feeds the model: its data policy applies to every request "
            "(restricted data keeps the model on site) and to its hard examples."
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help='ONNX Runtime options, JSON, e.g. \'{"execution_providers": '
            '["CUDAExecutionProvider", "CPUExecutionProvider"], "intra_op_threads": 2}\' '
            "(docs/execution-providers.md)."
        ),
    ] = None,
    batching: Annotated[
        str | None,
        typer.Option(
            help='Dynamic batching at edge and cloud, JSON, e.g. \'{"max_batch_size": 32, '
            '"max_queue_delay_ms": 2}\' (docs/models.md).'
        ),
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Make VERSION the version every edge runs (edges pull it within seconds)."""
    body: dict[str, Any] = {"name": name, "version": version}
    if any(x is not None for x in (policy, budget_ms, threshold, input_stream, runtime, batching)):
        kind = policy or (PolicyName.CASCADE if threshold is not None else PolicyName.LATENCY)
        body["policy"] = {"kind": kind.value, "latency_budget_ms": budget_ms}
        if threshold is not None:
            body["policy"]["cascade"] = {"threshold": threshold}
        if input_stream is not None:
            body["policy"]["input_stream"] = input_stream
        if runtime is not None:
            try:
                body["policy"]["runtime"] = json.loads(runtime)
            except ValueError as exc:
                raise fail(
                    f"--runtime is not valid JSON ({exc}); e.g. '{{\"intra_op_threads\": 2}}'"
                ) from None
        if batching is not None:
            try:
                body["policy"]["batching"] = json.loads(batching)
            except ValueError as exc:
                raise fail(
                    f"--batching is not valid JSON ({exc}); e.g. '{{\"max_batch_size\": 32}}'"
                ) from None
    deployed = call(cloud, token, "PUT", f"/api/v1/deployments/{name}", json=body)
    placed = deployed.get("policy") or {"kind": "latency"}
    cascade = placed.get("cascade") or {}
    detail = f", threshold {cascade['threshold']:.4f} ({cascade['measure']})" if cascade else ""
    out.print(f"{name}: fleet desired version is now v{version}, policy {placed['kind']}{detail}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None


def _version_to_calibrate(cloud: str, token: str | None, name: str) -> str:
    for model in call(cloud, token, "GET", "/api/v1/models"):
        if model["name"] == name and model["versions"]:
            return str(model.get("deployed_version") or model["versions"][-1])
    raise fail(f"model {name!r} has no versions: train one with `hybridai model train`")


@app.command()
def calibrate(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[
        str | None, typer.Option(help="Version (default: the deployed one, else the latest).")
    ] = None,
    target_cloud_share: Annotated[
        float | None, typer.Option(help="Share of requests the cloud may answer (0..1).")
    ] = None,
    target_accuracy: Annotated[
        float | None, typer.Option(help="Accuracy to reach with the fewest cloud calls.")
    ] = None,
    measure: Annotated[
        str, typer.Option(help="Confidence measure: margin, max_prob, entropy; regression: spread.")
    ] = "margin",
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled validation rows (Parquet) instead of the version's own."),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(help="A lake query returning labelled validation rows, instead of --data."),
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Label column of --data / --query (class numbers).")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Feature columns, comma-separated (default: the training run's, else all but "
            "--label, in order)."
        ),
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit the cascade threshold on validation rows and store it with the version.

    The rows are the version's own validation split, or labelled rows given with --data or
    --query and --label (any version, uploaded ones too; rows the model was trained or tested
    on are refused). Shows the validation curve (where the threshold is fitted) and the
    threshold's cloud share and accuracy on each split, labelled; only held-out rows are test.
    """
    if (target_cloud_share is None) == (target_accuracy is None):
        raise fail("give exactly one of --target-cloud-share or --target-accuracy")
    if data is not None and query is not None:
        raise fail("give --data FILE or --query SQL, not both")
    if (data is not None or query is not None) and label is None:
        raise fail("name the label column of the given rows with --label COL")
    version = version or _version_to_calibrate(cloud, token, name)
    body: dict[str, Any] = {
        "target_cloud_share": target_cloud_share,
        "target_accuracy": target_accuracy,
        "measure": measure,
    }
    if data is not None or query is not None:
        body.update(query=query, label=label)
        if features:
            body["features"] = [f.strip() for f in features.split(",") if f.strip()]
    path = f"/api/v1/models/{name}/versions/{version}/calibration"
    if data is None:
        report = call(cloud, token, "POST", path, json=body)
    else:
        report = call(
            cloud,
            token,
            "POST",
            f"{path}/data",
            files={"data": (data.name, _read(data), "application/octet-stream")},
            data={"settings": json.dumps(body)},
        )
    if as_json:
        print_json({**by_split(report), "rows": report.get("rows"), "guard": report.get("guard")})
        return
    print_calibration(out, report)
    out.print(f"validation rows: {report.get('rows')}; guard: {report.get('guard')}")


@app.command("hard-examples")
def hard_examples(
    name: Annotated[str, typer.Argument(help="Model name.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Count the model's hard examples in the lake: escalated requests, rows, who labelled them."""
    got = call(cloud, token, "GET", f"/api/v1/models/{name}/hard-examples")
    if as_json:
        print_json(got)
        return
    out.print(
        f"{name}: {got['requests']} escalated requests, {got['rows']} rows "
        f"({got['human_labelled']} labelled by people, every one by the cloud model); "
        f"{got['unreadable']} unreadable (inputs withheld by a data policy)"
    )


@app.command()
def label(
    name: Annotated[str, typer.Argument(help="Model name.")],
    request_id: Annotated[str, typer.Argument(help="The escalated request's id.")],
    label: Annotated[int, typer.Argument(help="The right class number for the row.", min=0)],
    row: Annotated[int, typer.Option(help="Row of the request (from 0).", min=0)] = 0,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Label one row of a hard example by hand (train with label_source human to use it)."""
    body = {"labels": [{"request_id": request_id, "row": row, "label": label}]}
    call(cloud, token, "POST", f"/api/v1/models/{name}/hard-examples/labels", json=body)
    out.print(f"{name}: request {request_id} row {row} labelled {label}")


def _stage(name: str, version: str, stage: str, cloud: str, token: str | None) -> None:
    info = call(
        cloud,
        token,
        "POST",
        f"/api/v1/models/{name}/versions/{version}/stage",
        json={"stage": stage},
    )
    out.print(f"{name} v{info['version']} is now {info['stage']}")


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    stage: Annotated[
        str, typer.Option(help="'staged', or 'production' (deploys it to the whole fleet).")
    ] = "staged",
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Move a version to staged, or to production (the previous production is archived)."""
    if stage not in ("staged", "production"):
        raise fail(
            "--stage must be 'staged' or 'production' (to archive: `hybridai model archive`)"
        )
    _stage(name, version, stage, cloud, token)


@app.command()
def archive(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
) -> None:
    """Archive a version that runs nowhere any more."""
    _stage(name, version, "archived", cloud, token)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@app.command()
def compare(
    name: Annotated[str, typer.Argument(help="Model name.")],
    a: Annotated[str, typer.Argument(help="First version.")],
    b: Annotated[str, typer.Argument(help="Second version.")],
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Two versions side by side: metrics (with B - A), artifact sizes, lineage differences."""
    data = call(cloud, token, "GET", f"/api/v1/models/{name}/compare", params={"a": a, "b": b})
    if as_json:
        print_json(data)
        return
    va, vb = data["a"], data["b"]
    title = f"{name}: v{va} ({data['stages'][va]}) vs v{vb} ({data['stages'][vb]})"
    table = Table(title=title)
    for col in ("", f"v{va}", f"v{vb}", "B - A"):
        table.add_column(col)
    for row in data["metrics"]:
        table.add_row(row["key"], _fmt(row["a"]), _fmt(row["b"]), _fmt(row["delta"]))
    for variant, size in data["sizes"].items():
        table.add_row(f"size {variant} (bytes)", _fmt(size["a"]), _fmt(size["b"]), "")
    for row in data["lineage"]:
        table.add_row(f"lineage {row['key']}", _fmt(row["a"]), _fmt(row["b"]), "")
    out.print(table)
