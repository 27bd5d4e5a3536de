"""``hybridai demo``: a whole local fleet at work, then a summary."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hybridai.cli._api import JsonOpt, fail, print_json
from hybridai.cli._extras import require


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title="hybridai demo: summary", show_lines=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("records ingested at the edges", summary["records_ingested"]),
        ("records synced to the lake (distinct)", summary["records_synced"]),
        ("records lost", summary["records_lost"]),
        ("duplicate rows in the lake", summary["lake_duplicates"]),
        ("bytes synced (Parquet zstd)", f"{summary['bytes_synced']:,}"),
        ("same records as raw JSON", f"{summary['json_bytes']:,}"),
        ("wire bytes / JSON bytes", summary["wire_bytes_ratio_vs_json"]),
        ("requests served at edge", summary["requests_edge"]),
        ("requests served in cloud", summary["requests_cloud"]),
        ("requests degraded (cloud unreachable)", summary["requests_degraded"]),
    ]
    for placement, lat in summary["latency"].items():
        rows.append(
            (f"latency at {placement} p50 / p99 (ms)", f"{lat['p50_ms']} / {lat['p99_ms']}")
        )
    for device, models in summary["model_versions"].items():
        rows.append((f"model on {device}", ", ".join(f"{n} v{v}" for n, v in models.items())))
    outage = summary["outage"]
    rows.append(
        (
            f"outage of {outage['device']}",
            f"{outage['seconds']}s, backlog {outage['backlog_at_restore']} then drained",
        )
    )
    for label, info in summary["versions"].items():
        metrics = info["training_metrics"]
        for variant in ("edge", "cloud"):
            m = metrics.get(variant, {})
            rows.append(
                (
                    f"{label} {variant} variant held-out AUC / F1",
                    f"{m.get('roc_auc', 0):.3f} / {m.get('f1', 0):.3f}",
                )
            )
        q = summary["holdout_quality_cloud_variant"][label]
        rows.append(
            (
                f"{label} cloud variant on fresh plant AUC / F1",
                f"{q['roc_auc']:.3f} / {q['f1']:.3f}",
            )
        )
    rows.append(("wall time (s)", summary["wall_s"]))
    for what, value in rows:
        table.add_row(what, str(value))
    return table


SCENARIO_HELP = (
    "The use case to play: pm (predictive maintenance, the default: the whole platform story "
    "with rollouts and an outage), fraud (fraud scoring in branches), network (network and IT "
    "monitoring); 'list' names them."
)


def _use_case_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"hybridai demo --scenario {summary['scenario']}: {summary['title']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    metric = summary["metric"]
    retraining = summary["retraining"]
    rows: list[tuple[str, Any]] = [
        (
            "records ingested at the edges",
            ", ".join(f"{n} {s}" for s, n in summary["records_ingested"].items()),
        ),
        (f"edge model {metric} (holdout)", summary["edge_quality"]),
        (f"cloud model {metric} (holdout)", summary["cloud_quality"]),
        (f"cascade {metric} at its cloud share", summary["cascade_quality"]),
        (
            "cloud share (calibrated / live)",
            f"{summary['cloud_share']} / {summary['live_cloud_share']}",
        ),
        ("live answers agreeing with the calibrated rule", summary["live_agreement"]),
        ("edge latency p50 / p99 (ms)", f"{summary['edge_p50_ms']} / {summary['edge_p99_ms']}"),
        ("edge latency budget (ms)", summary["edge_budget_ms"]),
        ("bytes to the cloud / raw bytes", summary["wire_ratio"]),
        (
            f"edge {metric} before / after retraining on "
            f"{retraining['hard_examples']} hard examples",
            f"{retraining['edge_quality_before']} / {retraining['edge_quality_after']}",
        ),
    ]
    for tier, details in summary["details"].items():
        rows += [(f"{tier} {name}", value) for name, value in details.items()]
    rows += [(f"lake check: {what}", n) for what, n in summary["lake_checks"].items()]
    for what, result in summary["analytics"].items():
        rows.append((f"cloud analytics: {what}", f"{len(result['rows'])} rows"))
    rows.append(("wall time (s)", summary["wall_s"]))
    for what, value in rows:
        table.add_row(what, str(value))
    return table


def _play_use_case(
    name: str, size: str, seed: int, folder: Path, console: Console
) -> dict[str, Any]:
    from hybridai.demo.fleet import LocalFleet
    from hybridai.demo.scenarios import get
    from hybridai.demo.scenarios.runner import Run

    case = get(name)
    fleet = LocalFleet(folder)
    try:
        with console.status(f"starting the cloud for {case.title}") as status:
            fleet.start_cloud()
            run = Run(fleet, case, size, seed, on_phase=lambda p: status.update(p))
            return run.play()
    finally:
        fleet.close()


def demo(
    scenario: Annotated[str, typer.Option(help=SCENARIO_HELP)] = "pm",
    size: Annotated[
        str, typer.Option(help="Data played by fraud and network: quick (~2 min) or full.")
    ] = "quick",
    duration: Annotated[
        float, typer.Option(help="Seconds of sensor traffic (the whole demo takes ~1.5x).")
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated plant.")] = 7,
    keep: Annotated[bool, typer.Option(help="Keep the workspace (logs, stores, lake).")] = False,
    workspace: Annotated[
        Path | None, typer.Option(help="Use this folder instead of a temporary one.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a cloud and edge agents locally and show a whole hybrid use case at work."""
    from hybridai.demo.scenarios import SCENARIOS

    if scenario == "list":
        for name, case in SCENARIOS.items():
            typer.echo(f"{name}\t{case.title}")
        return
    if scenario not in SCENARIOS:
        raise fail(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}", 2)
    if size not in ("quick", "full"):
        raise fail(f"unknown size {size!r}: choose quick or full", 2)
    require("edge", "cloud")
    from hybridai.demo.launcher import ChildFailed
    from hybridai.demo.scenario import DemoFailed, DemoOptions, Scenario
    from hybridai.observability import logs

    try:  # the demo's own lines; its processes log to their files in the workspace
        logs.setup(os.environ.get(logs.LEVEL_ENV, "warning"))
    except ValueError as exc:
        raise fail(str(exc)) from None
    console = Console(stderr=as_json)
    folder = workspace or Path(tempfile.mkdtemp(prefix="hybridai-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    if scenario != "pm":
        try:
            summary = _play_use_case(scenario, size, seed, folder, console)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping every process[/]")
            raise typer.Exit(130) from None
        except (DemoFailed, ChildFailed) as exc:
            keep = True
            raise fail(f"the demo failed: {exc}\nlogs are in {folder}") from None
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        if as_json:
            print_json(summary)
        else:
            console.print(_use_case_table(summary))
            if keep:
                console.print(f"workspace kept in {folder}")
        return
    story = Scenario(DemoOptions(duration_s=duration, seed=seed), folder, console)
    try:
        summary = story.run()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping every process[/]")
        raise typer.Exit(130) from None
    except (DemoFailed, ChildFailed) as exc:
        keep = True
        raise fail(f"the demo failed: {exc}\nlogs are in {folder}") from None
    finally:
        story.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if as_json:
        print_json(summary)
    else:
        console.print(_table(summary))
        if keep:
            console.print(f"workspace kept in {folder}")
    if summary["records_lost"] != 0:
        raise fail(f"{summary['records_lost']} records lost")
