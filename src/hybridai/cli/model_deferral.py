"""``hybridai model defer``: fit a version's learned deferral router and choose its method."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hybridai.cli._api import (
    DEFAULT_CLOUD,
    CloudOpt,
    JsonOpt,
    TokenOpt,
    call,
    fail,
    out,
    print_json,
)


def _latest(cloud: str, token: str | None, name: str) -> str:
    for model in call(cloud, token, "GET", "/api/v1/models"):
        if model["name"] == name and model["versions"]:
            return str(model.get("deployed_version") or model["versions"][-1])
    raise fail(f"model {name!r} has no versions: train one with `hybridai model train`")


def _table(report: dict[str, Any], split: str) -> Table:
    figures = report[split]
    table = Table(title=f"{split.upper()} split ({figures['rows']} rows): {figures['role']}")
    for column in (
        "method",
        "threshold",
        "cloud share",
        "accuracy",
        "APGR",
        "CPT(50%)",
        "CPT(80%)",
    ):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method, m in figures["methods"].items():
        shown = [m.get(k) for k in ("apgr", "cpt50", "cpt80")]
        table.add_row(
            method + (" (ships)" if method == report["method"] else ""),
            f"{m['threshold']:.4f}",
            f"{m['cloud_share']:.3f}",
            f"{m['accuracy']:.4f}",
            *("-" if v is None else f"{v:.3f}" for v in shown),
        )
    table.caption = (
        f"edge alone {figures['edge_alone_accuracy']:.4f}, "
        f"cloud alone {figures['cloud_alone_accuracy']:.4f}"
    )
    return table


def defer(
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
    method: Annotated[
        str,
        typer.Option(
            help="auto (the higher validation APGR; the router only when strictly higher), "
            "threshold or router."
        ),
    ] = "auto",
    query: Annotated[
        str | None, typer.Option(help="A lake query returning labelled validation rows.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Label column of --query.")] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a learned deferral router on validation rows and choose the cascade's method.

    The router predicts, from the input and the edge variant's outputs, whether the edge answer
    is wrong; it is calibrated to the target like the threshold, signed, and shipped to edges
    with the edge variant. Figures are shown per split: validation (fitted there) and test
    (held out).
    """
    if (target_cloud_share is None) == (target_accuracy is None):
        raise fail("give exactly one of --target-cloud-share or --target-accuracy")
    if method not in ("auto", "threshold", "router"):
        raise fail(f"--method must be auto, threshold or router, not {method!r}")
    if query is not None and label is None:
        raise fail("name the label column of the query's rows with --label COL")
    version = version or _latest(cloud, token, name)
    body: dict[str, Any] = {
        "target_cloud_share": target_cloud_share,
        "target_accuracy": target_accuracy,
        "method": method,
    }
    if query is not None:
        body.update(query=query, label=label)
    report = call(
        cloud, token, "POST", f"/api/v1/models/{name}/versions/{version}/deferral", json=body
    )
    if as_json:
        print_json(report)
        return
    out.print(_table(report, "validation"))
    out.print(_table(report, "test"))
    family = report.get("router_family") or "none (too few edge errors to learn from)"
    out.print(
        f"{name} v{report['version']} ships method {report['method']} (chosen by "
        f"{report['chosen_by']}); router: {family}, {report['router_bytes']} bytes, signed"
    )
