"""``hybridai plan``: simulate an architecture before buying it, and assess an inventory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hybridai.cli._api import JsonOpt, fail, out, print_json
from hybridai.protocol.placement import PolicyKind

app = typer.Typer(
    help="Plan: simulate placements on a scenario file, assess an inventory.",
    no_args_is_help=True,
)


def _planner_missing(exc: ImportError) -> typer.Exit:
    return fail(
        f"the planner needs {exc.name or 'its extra'}: pip install 'hybridai[planner]'", code=2
    )


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Argument(help="the scenario file (YAML, docs/planner.md)")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for report.html, requests.parquet, summary.json")
    ] = Path("report"),
    policy: Annotated[
        list[PolicyKind] | None,
        typer.Option("--policy", help="simulate only these policies (repeatable)"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every policy of SCENARIO through the live placement code and write a report."""
    try:
        from hybridai.planner import report
        from hybridai.planner.scenario import ScenarioError, load
        from hybridai.planner.simulator import simulate as run_all
    except ImportError as exc:
        raise _planner_missing(exc) from None
    try:
        spec = load(scenario)
    except ScenarioError as exc:
        raise fail(f"the scenario is not valid:\n{exc}", code=2) from None
    if seed is not None:
        spec = spec.model_copy(update={"seed": seed})
    kinds = policy or spec.policies
    with Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=out,
        disable=as_json,
        transient=False,
    ) as progress:
        tasks = {k.value: progress.add_task(k.value, total=1.0) for k in kinds}

        def step(name: str, share: float) -> None:
            progress.update(tasks[name], completed=share)

        runs = run_all(spec, list(kinds), step)
    paths = report.write(spec, runs, out_dir)
    rows = report.summaries(spec, runs)
    if as_json:
        print_json(
            {
                "scenario": spec.name,
                "policies": rows,
                "files": {k: str(v) for k, v in paths.items()},
            }
        )
        return
    out.print(_table(spec.name, rows))
    out.print(f"[bold]{report.verdict(rows)}[/]")
    out.print(f"report: {paths['html']}  requests: {paths['requests']}")


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    columns = [
        ("policy", "policy", "{}"),
        ("latency_p50_ms", "p50 ms", "{:,.1f}"),
        ("latency_p95_ms", "p95 ms", "{:,.1f}"),
        ("latency_p99_ms", "p99 ms", "{:,.1f}"),
        ("budget_violation_share", "late", "{:.1%}"),
        ("cloud_share", "cloud", "{:.1%}"),
        ("cost", "cost", "{:,.2f}"),
        ("wan_bytes", "WAN GB", "{:,.2f}"),
        ("edge_utilisation_mean", "edge use", "{:.1%}"),
        ("edge_energy_kwh", "kWh", "{:,.1f}"),
        ("quality", "quality", "{:.3f}"),
    ]
    for _, label, _ in columns:
        table.add_column(label, justify="right")
    for r in rows:
        cells = []
        for key, _, form in columns:
            value = r.get(key)
            if key == "cost":
                value = r["cloud_call_cost"] + r["cloud_instance_cost"] + r["egress_cost"]
            if key == "wan_bytes" and value is not None:
                value = value / 1e9
            cells.append("-" if value is None else form.format(value))
        table.add_row(*cells)
    return table


@app.command()
def assess(
    inventory: Annotated[Path, typer.Argument(help="the inventory file (YAML, docs/planner.md)")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="also write assessment.md and assessment.html here")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recommend edge, cloud or hybrid per workload of INVENTORY, with reasons, cost and gaps."""
    try:
        from hybridai.planner import assessment
        from hybridai.planner.scenario import ScenarioError
    except ImportError as exc:
        raise _planner_missing(exc) from None
    try:
        found = assessment.assess(assessment.load(inventory))
    except ScenarioError as exc:
        raise fail(f"the inventory is not valid:\n{exc}", code=2) from None
    markdown = assessment.markdown(found)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "assessment.md").write_text(markdown)
        (out_dir / "assessment.html").write_text(assessment.html_page(found))
    if as_json:
        print_json(json.loads(found.model_dump_json()))
        return
    from rich.markdown import Markdown

    out.print(Markdown(markdown))
