"""The infrastructure assessment: edge, cloud or hybrid per workload, with reasons and gaps.

An inventory is a scenario file without the comparison (the same sites, devices, links, cloud,
models and workloads; ``policies`` are ignored). Each workload is judged by the simulator
itself, so the assessment and ``plan simulate`` share one cost and latency model: it runs at
its busiest hour at one site of each shape that has it, once at the edge, once in the cloud
and once as a cascade, and the figures are scaled to a day.
"""

from __future__ import annotations

import html
from typing import Literal

import numpy as np
from pydantic import BaseModel

from hybridai.planner.arrivals import peak_rate
from hybridai.planner.results import Run
from hybridai.planner.scenario import Scenario, Site, Workload, load
from hybridai.planner.simulator import simulate
from hybridai.protocol.placement import PolicyKind

__all__ = ["Assessment", "Option", "WorkloadAssessment", "assess", "html_page", "load", "markdown"]

Recommendation = Literal["edge", "cloud", "hybrid", "none"]
OPTIONS: dict[PolicyKind, Recommendation] = {
    PolicyKind.EDGE_ONLY: "edge",
    PolicyKind.CLOUD_ONLY: "cloud",
    PolicyKind.CASCADE: "hybrid",
}
MAX_REQUESTS = 20_000  # per option: enough for a p95, quick enough for an interactive command
LINK_HEADROOM = 0.7  # a link busier than this with one workload's data is too thin
QUALITY_SLACK = 0.015  # an answer within 1.5 points of the cloud model's counts as as good


class Option(BaseModel):
    placement: Recommendation
    available: bool
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    meets_budget: bool
    cost_per_day: float  # cloud calls and egress, scaled to a day of every site
    wan_gb_per_day: float
    quality: float | None
    edge_utilisation: float  # the busiest device's, at the busiest hour


class WorkloadAssessment(BaseModel):
    workload: str
    model: str
    data_class: str
    latency_budget_ms: float | None
    requests_per_day: float
    recommendation: Recommendation
    reasons: list[str]
    gaps: list[str]
    options: list[Option]


class Assessment(BaseModel):
    name: str
    workloads: list[WorkloadAssessment]

    @property
    def gaps(self) -> list[str]:
        return [f"{w.workload}: {g}" for w in self.workloads for g in w.gaps]


def _window(rate: float) -> float:
    return float(min(3600.0, max(60.0, MAX_REQUESTS / max(rate, 1e-9))))


def _sites_with(s: Scenario, w: Workload) -> list[Site]:
    return [
        site
        for site in s.sites
        if (w.sites is None or site.name in w.sites)
        and any(d.name == w.device for d in site.devices)
    ]


def _busiest(s: Scenario, w: Workload) -> Scenario:
    """The workload alone, at its peak rate, at one site of each shape that has it."""
    rate = peak_rate(w.arrival)
    arrival = w.arrival.model_copy(update={"rate_per_s": rate, "daily": [], "bursts": None})
    sites = [
        site.model_copy(update={"count": 1, "link": site.link.model_copy(update={"outages": []})})
        for site in _sites_with(s, w)
    ]
    return s.model_copy(
        update={
            "duration_s": _window(rate),
            "sites": sites,
            "workloads": [w.model_copy(update={"arrival": arrival})],
            "simulation": s.simulation.model_copy(update={"max_sites_per_shape": None}),
        }
    )


def _requests_per_day(s: Scenario, w: Workload) -> float:
    a = w.arrival
    mean = float(np.mean(a.daily)) if a.daily else 1.0
    if a.bursts is not None:
        share = min(a.bursts.duration_s / a.bursts.every_s, 1.0)
        mean *= 1.0 + share * (a.bursts.factor - 1.0)
    sites = sum(site.count for site in _sites_with(s, w))
    return a.rate_per_s * mean * 86400.0 * sites


def _option(s: Scenario, w: Workload, run: Run, per_day: float) -> Option:
    figures = run.summary(s.cloud.egress_cost_per_gb)
    n = max(figures["requests"], 1.0)
    scale = per_day / n
    available = figures["failed"] < 0.01 * n
    budget = w.latency_budget_ms
    p95 = figures["latency_p95_ms"]
    meets = available and (budget is None or (p95 is not None and p95 <= budget))
    busiest = max((d.utilisation for d in run.devices), default=0.0)
    cost = (figures["cloud_call_cost"] + figures["egress_cost"]) * scale
    return Option(
        placement=OPTIONS[PolicyKind(run.policy)],
        available=available,
        latency_p50_ms=figures["latency_p50_ms"],
        latency_p95_ms=p95,
        meets_budget=meets,
        cost_per_day=cost,
        wan_gb_per_day=(figures["wan_bytes"] - figures["sync_bytes"]) * scale / 1e9,
        quality=figures["quality"],
        edge_utilisation=busiest,
    )


def _gaps(s: Scenario, w: Workload, options: dict[Recommendation, Option]) -> list[str]:
    gaps = []
    model = s.model(w.model)
    hosts = [
        d
        for site in _sites_with(s, w)
        for d in site.devices
        if w.model in d.models and model.edge.size_mb <= d.memory_mb
    ]
    too_small = [
        d.name
        for site in _sites_with(s, w)
        for d in site.devices
        if w.model in d.models and model.edge.size_mb > d.memory_mb
    ]
    if too_small:
        gaps.append(
            f"the edge variant ({model.edge.size_mb:g} MB) does not fit on {', '.join(too_small)}"
        )
    if w.data_class == "restricted" and (not hosts or not options["edge"].available):
        gaps.append("restricted data must stay on site, but no device there can run the model")
    elif w.data_class == "restricted" and options["edge"].edge_utilisation >= 0.95:
        gaps.append("restricted data must stay on site, but its devices are saturated at peak")
    if not any(o.meets_budget for o in options.values()):
        gaps.append(
            f"no placement meets the {w.latency_budget_ms:g} ms budget at peak "
            f"(best p95 {min(o.latency_p95_ms or np.inf for o in options.values()):,.0f} ms)"
        )
    for site in _sites_with(s, w):
        need = peak_rate(w.arrival) * w.payload_bytes.expected * 8 / 1e6
        if need > LINK_HEADROOM * site.link.bandwidth_mbps:
            gaps.append(
                f"site {site.name}'s link ({site.link.bandwidth_mbps:g} Mbit/s) is too thin for "
                f"this data at peak ({need:,.1f} Mbit/s): the cloud option queues on it"
            )
    return gaps


def _recommend(
    w: Workload, options: dict[Recommendation, Option]
) -> tuple[Recommendation, list[str]]:
    edge, cloud, hybrid = options["edge"], options["cloud"], options["hybrid"]
    if w.data_class == "restricted":
        if edge.meets_budget or edge.available:
            return "edge", ["restricted data may not leave the site"]
        return "none", ["restricted data may not leave the site and no edge can run the model"]
    fits = [o for o in (edge, hybrid, cloud) if o.meets_budget]
    if not fits:
        best = min(options.values(), key=lambda o: o.latency_p95_ms or np.inf)
        return best.placement, ["nothing meets the budget; this comes closest"]
    reasons = []
    cloud_quality = cloud.quality or 0.0
    if edge in fits and (edge.quality or 0.0) >= cloud_quality - QUALITY_SLACK:
        reasons.append(f"the edge model is as good as the cloud's ({edge.quality:.3f})")
        reasons.append(f"and meets the budget (p95 {edge.latency_p95_ms:,.1f} ms) at no cloud cost")
        return "edge", reasons
    if hybrid in fits and (hybrid.quality or 0.0) >= cloud_quality - QUALITY_SLACK:
        reasons.append(
            f"the cascade answers near the cloud's quality ({hybrid.quality:.3f} vs "
            f"{cloud_quality:.3f}) for {hybrid.cost_per_day:,.2f}/day instead of "
            f"{cloud.cost_per_day:,.2f}"
        )
        return "hybrid", reasons
    if cloud in fits:
        reasons.append(f"only the cloud model reaches {cloud_quality:.3f} within the budget")
        return "cloud", reasons
    best = max(fits, key=lambda o: o.quality or 0.0)
    return best.placement, [f"the best quality within the budget ({best.quality:.3f})"]


def assess(s: Scenario) -> Assessment:
    """Judge every workload of the inventory."""
    found = []
    for w in s.workloads:
        busiest = _busiest(s, w)
        per_day = _requests_per_day(s, w)
        runs = simulate(busiest, list(OPTIONS))
        options = {OPTIONS[PolicyKind(r.policy)]: _option(s, w, r, per_day) for r in runs}
        recommendation, reasons = _recommend(w, options)
        found.append(
            WorkloadAssessment(
                workload=w.name,
                model=w.model,
                data_class=w.data_class,
                latency_budget_ms=w.latency_budget_ms,
                requests_per_day=per_day,
                recommendation=recommendation,
                reasons=reasons,
                gaps=_gaps(s, w, options),
                options=list(options.values()),
            )
        )
    return Assessment(name=s.name, workloads=found)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def markdown(a: Assessment) -> str:
    lines = [f"# Assessment: {a.name}", ""]
    lines += ["| workload | recommendation | why |", "| --- | --- | --- |"]
    for w in a.workloads:
        lines.append(f"| {w.workload} | **{w.recommendation}** | {'; '.join(w.reasons)} |")
    lines += ["", "## Gaps", ""]
    lines += [f"- {g}" for g in a.gaps] or ["- none found"]
    for w in a.workloads:
        budget = "none" if w.latency_budget_ms is None else f"{w.latency_budget_ms:g} ms"
        lines += [
            "",
            f"## {w.workload} (model {w.model}, {w.data_class} data, budget {budget}, "
            f"{w.requests_per_day:,.0f} requests/day)",
            "",
            "| option | p50 ms | p95 ms | meets budget | cost/day | WAN GB/day | quality | "
            "edge busy at peak |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for o in w.options:
            quality = "-" if o.quality is None else f"{o.quality:.3f}"
            lines.append(
                f"| {o.placement} | {_ms(o.latency_p50_ms)} | {_ms(o.latency_p95_ms)} | "
                f"{'yes' if o.meets_budget else 'no'} | {o.cost_per_day:,.2f} | "
                f"{o.wan_gb_per_day:,.2f} | {quality} | {o.edge_utilisation:.0%} |"
            )
    return "\n".join(lines) + "\n"


def html_page(a: Assessment) -> str:
    """The same content as ``markdown``, as a page that opens anywhere."""
    rows = "".join(
        f"<tr><td>{html.escape(w.workload)}</td><td class='{w.recommendation}'>"
        f"{w.recommendation}</td><td>{html.escape('; '.join(w.reasons))}</td></tr>"
        for w in a.workloads
    )
    gaps = "".join(f"<li>{html.escape(g)}</li>" for g in a.gaps) or "<li>none found</li>"
    details = ""
    for w in a.workloads:
        options = "".join(
            f"<tr><td>{o.placement}</td><td>{_ms(o.latency_p50_ms)}</td>"
            f"<td>{_ms(o.latency_p95_ms)}</td><td>{'yes' if o.meets_budget else 'no'}</td>"
            f"<td>{o.cost_per_day:,.2f}</td><td>{o.wan_gb_per_day:,.2f}</td>"
            f"<td>{'-' if o.quality is None else f'{o.quality:.3f}'}</td>"
            f"<td>{o.edge_utilisation:.0%}</td></tr>"
            for o in w.options
        )
        details += (
            f"<h2>{html.escape(w.workload)}</h2><p>model {html.escape(w.model)}, "
            f"{html.escape(w.data_class)} data, {w.requests_per_day:,.0f} requests/day</p>"
            "<table><tr><th>option</th><th>p50 ms</th><th>p95 ms</th><th>meets budget</th>"
            "<th>cost/day</th><th>WAN GB/day</th><th>quality</th><th>edge busy</th></tr>"
            f"{options}</table>"
        )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Assessment: {html.escape(a.name)}</title><style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 980px; }}
table {{ border-collapse: collapse; margin: .75rem 0; }}
td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
.edge {{ color: #2a9d8f; font-weight: 700; }} .cloud {{ color: #e76f51; font-weight: 700; }}
.hybrid {{ color: #b8860b; font-weight: 700; }} .none {{ color: #c00; font-weight: 700; }}
</style></head><body><h1>Assessment: {html.escape(a.name)}</h1>
<table><tr><th>workload</th><th>recommendation</th><th>why</th></tr>{rows}</table>
<h2>Gaps</h2><ul>{gaps}</ul>{details}</body></html>
"""
