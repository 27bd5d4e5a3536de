"""A simulation's report: summary JSON, per-request Parquet, and an HTML page with plots.

The page leads with the answer (which policy meets the budget at what cost), then shows it:
latency distributions, where requests ran, cost and WAN traffic, the load over the day and edge
utilisation. Plots are PNGs embedded in the page, so it is one file that opens offline.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hybridai.planner.results import Run
from hybridai.planner.scenario import Scenario

COLOURS = {
    "edge-only": "#2a9d8f",
    "cloud-only": "#e76f51",
    "latency": "#264653",
    "cascade": "#e9c46a",
}


def summaries(scenario: Scenario, runs: list[Run]) -> list[dict[str, Any]]:
    return [r.summary(scenario.cloud.egress_cost_per_gb) for r in runs]


def write(scenario: Scenario, runs: list[Run], out: Path) -> dict[str, Path]:
    """Write ``summary.json``, ``requests.parquet`` and ``report.html`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = summaries(scenario, runs)
    paths = {
        "summary": out / "summary.json",
        "requests": out / "requests.parquet",
        "html": out / "report.html",
    }
    paths["summary"].write_text(json.dumps({"scenario": scenario.name, "policies": rows}, indent=2))
    pq.write_table(
        pa.concat_tables([r.table() for r in runs]), paths["requests"], compression="zstd"
    )
    paths["html"].write_text(page(scenario, runs, rows))
    return paths


def verdict(rows: list[dict[str, Any]]) -> str:
    """One sentence: the cheapest policy that keeps budget violations under 1 %."""

    def total_cost(r: dict[str, Any]) -> float:
        return float(r["cloud_call_cost"] + r["cloud_instance_cost"] + r["egress_cost"])

    fits = [r for r in rows if r["budget_violation_share"] < 0.01 and not r["failed"]]
    if not fits:
        best = min(rows, key=lambda r: r["budget_violation_share"])
        return (
            f"No policy keeps budget violations under 1 %; {best['policy']} comes closest "
            f"({best['budget_violation_share']:.1%} of requests over budget)."
        )
    best = min(fits, key=lambda r: (total_cost(r), -(r["quality"] or 0.0)))
    return (
        f"{best['policy']} meets the latency budget for {1 - best['budget_violation_share']:.1%} "
        f"of requests at {total_cost(best):,.2f} in cloud and egress cost, quality "
        f"{(best['quality'] or 0.0):.3f}, {best['cloud_share']:.1%} of answers from the cloud."
    )


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(
    scenario: Scenario, runs: list[Run], rows: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figures: list[tuple[str, str]] = []
    names = [r.policy for r in runs]
    colours = [COLOURS.get(n, "#888888") for n in names]

    styles = ["-", "--", "-.", ":"]  # policies that behave alike stay visible on top of another
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (run, colour) in enumerate(zip(runs, colours, strict=True)):
        lat = np.sort(run.latency_ms[~run.failed])
        if lat.size:
            ax.plot(
                lat,
                np.linspace(0, 1, lat.size),
                label=run.policy,
                color=colour,
                lw=2,
                ls=styles[i % len(styles)],
            )
    budgets = sorted({w.latency_budget_ms for w in scenario.workloads if w.latency_budget_ms})
    for b in budgets:
        ax.axvline(b, color="#999", ls="--", lw=1)
        ax.text(b, 0.02, f" budget {b:g} ms", color="#666", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests answered within")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    figures.append(("Latency: how many requests are answered within x ms", _png(fig)))
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    x = np.arange(len(names))
    cost = [r["cloud_call_cost"] + r["cloud_instance_cost"] + r["egress_cost"] for r in rows]
    axes[0].bar(x, cost, color=colours)
    axes[0].set_title("cloud + egress cost")
    axes[1].bar(x, [r["wan_bytes"] / 1e9 for r in rows], color=colours)
    axes[1].set_title("WAN traffic (GB)")
    axes[2].bar(x, [100 * r["budget_violation_share"] for r in rows], color=colours)
    axes[2].set_title("over budget (% of requests)")
    for ax in axes:
        ax.set_xticks(x, names, rotation=20)
        ax.grid(axis="y", alpha=0.3)
    figures.append(("What each policy costs", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    places = ["edge", "peer", "cloud", "none"]
    shades = {"edge": "#2a9d8f", "peer": "#8ab17d", "cloud": "#e76f51", "none": "#bbbbbb"}
    bottom = np.zeros(len(runs))
    for place in places:
        share = np.array(
            [
                float(r.weight[np.asarray(r.where) == place].sum() / max(r.weight.sum(), 1))
                for r in runs
            ]
        )
        ax.barh(names, share, left=bottom, color=shades[place], label=place)
        bottom += share
    ax.set_xlabel("share of requests answered at")
    ax.legend(ncol=4, frameon=False, loc="lower right")
    figures.append(("Where requests were answered", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    bins = np.linspace(0, scenario.duration_s, 97)
    for i, (run, colour) in enumerate(zip(runs, colours, strict=True)):
        ok = ~run.failed
        which = np.digitize(run.arrival[ok], bins) - 1
        lat = run.latency_ms[ok]
        p95 = [
            float(np.percentile(lat[which == i], 95)) if np.any(which == i) else np.nan
            for i in range(96)
        ]
        ax.plot(bins[:-1] / 3600.0, p95, color=colour, label=run.policy, ls=styles[i % 4])
    ax.set_yscale("log")
    ax.set_xlabel("hour of the simulated day")
    ax.set_ylabel("p95 latency (ms)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    figures.append(("p95 latency over time (outages and bursts show here)", _png(fig)))
    plt.close(fig)
    return figures


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "%":
        return f"{100 * value:.1f} %"
    if kind == "ms":
        return f"{value:,.1f}"
    if kind == "GB":
        return f"{value / 1e9:,.2f}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return html.escape(str(value))


COLUMNS = [
    ("policy", "policy", ""),
    ("latency_p50_ms", "p50 ms", "ms"),
    ("latency_p95_ms", "p95 ms", "ms"),
    ("latency_p99_ms", "p99 ms", "ms"),
    ("budget_violation_share", "over budget", "%"),
    ("failed", "failed", ""),
    ("cloud_share", "cloud share", "%"),
    ("cloud_calls", "cloud calls", ""),
    ("cloud_call_cost", "call cost", ""),
    ("cloud_instance_cost", "instance cost", ""),
    ("wan_bytes", "WAN GB", "GB"),
    ("egress_cost", "egress cost", ""),
    ("edge_utilisation_mean", "edge util.", "%"),
    ("edge_energy_kwh", "edge kWh", ""),
    ("quality", "quality", ""),
]


def page(scenario: Scenario, runs: list[Run], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r[key], kind)}</td>" for key, _, kind in COLUMNS) + "</tr>"
        for r in rows
    )
    plots = "".join(
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}"></figure>'
        for title, data in _plots(scenario, runs, rows)
    )
    sites = sum(s.count for s in scenario.sites)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(scenario.name)}: plan</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
.verdict {{ font-size: 1.25rem; background: #f4f1de; padding: 1rem 1.25rem; border-radius: 8px; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 1rem 0; }}
th, td {{ padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
figure {{ margin: 1.5rem 0; }} figcaption {{ font-weight: 600; margin-bottom: .4rem; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(scenario.name)}</h1>
<p>{sites} sites, {len(scenario.workloads)} workloads, {scenario.duration_s / 3600:g} simulated
hours, seed {scenario.seed}. Each policy was placed by the edge router's own code on the same
requests.</p>
<p class="verdict">{html.escape(verdict(rows))}</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{plots}
<p>Per-request data: <code>requests.parquet</code>; figures: <code>summary.json</code>.</p>
</body></html>
"""
