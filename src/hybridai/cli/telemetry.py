"""``hybridai fleet telemetry``: one device's series from the cloud, as a table or JSON."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from hybridai.cli._api import DEFAULT_CLOUD, CloudOpt, JsonOpt, TokenOpt, call, out, print_json


def telemetry(
    device: Annotated[str, typer.Argument(help="The device, e.g. edge-1.")],
    metric: Annotated[
        str, typer.Argument(help="e.g. latency_p99_ms, backlog_records, clock_skew_s.")
    ],
    model: Annotated[str, typer.Option(help="A model's series (latency, escalations).")] = "",
    since: Annotated[str, typer.Option(help="From: 1h, 30m, 7d back, or epoch seconds.")] = "1h",
    until: Annotated[str, typer.Option(help="To (default: now).")] = "",
    step: Annotated[
        int | None, typer.Option(help="Seconds per point (0 raw; default: chosen for the span).")
    ] = None,
    cloud: CloudOpt = DEFAULT_CLOUD,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A device's telemetry series: raw points or min/mean/max per bucket."""
    params: dict[str, str | int] = {"device": device, "metric": metric, "since": since}
    if model:
        params["model"] = model
    if until:
        params["until"] = until
    if step is not None:
        params["step"] = step
    data = call(cloud, token, "GET", "/api/v1/telemetry", params=params)
    if as_json:
        print_json(data)
        return
    label = f"{metric} of {device}" + (f" model {model}" if model else "")
    resolution = "raw" if data["step"] == 0 else f"{data['step']} s"
    table = Table(title=f"{label} ({resolution})")
    for column in ("time (UTC)", "count", "min", "mean", "max"):
        table.add_column(column, justify="left" if column.startswith("time") else "right")
    for point in data["points"]:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(point["ts"])),
            str(point["count"]),
            f"{point['min']:.4g}",
            f"{point['mean']:.4g}",
            f"{point['max']:.4g}",
        )
    out.print(table if data["points"] else f"no points of {label} in that span")
