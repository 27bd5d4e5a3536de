"""Network and IT monitoring: anomaly detection on host metrics at the edge, trends in the cloud.

The generator plays hosts at 5-minute ticks: traffic with a daily season and noise, CPU and
latency that follow it, memory, error counts. Labelled anomalies are laid on top: short
spikes, level shifts that persist, slow memory leaks and DDoS-like bursts (traffic, errors and
latency up together). The edge computes each tick's features from the host's recent history
(deviation from an exponentially weighted mean, from the same time yesterday, memory slope),
as a site's collector would; incident tickets arrive as their own stream and label the lake.

Quality is NAB-style (``observability.nab``): per host series, the earliest detection in each
anomaly's window scores, late detections less, false alarms cost a little.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

from hybridai.demo.scenarios.base import Array, Holdout, Quality, Records, Site, Sizes, UseCase
from hybridai.observability import nab

FEATURES = (
    "traffic_z",
    "traffic_vs_yesterday",
    "cpu_pct",
    "mem_pct",
    "mem_slope",
    "errors_log",
    "latency_ratio",
)
TICK_S = 300.0
SEASON = 288  # ticks in a day
KINDS = ("spike", "level_shift", "leak", "ddos")
START_TS = 1_767_225_600.0
DETECTION_THRESHOLD = 0.9  # an alert threshold for few false alarms (NAB charges each)


def _anomalies(rng: np.random.Generator, ticks: int) -> list[tuple[int, int, str]]:
    """(first, last, kind) events, one every ~250 ticks, never overlapping."""
    events: list[tuple[int, int, str]] = []
    t = int(rng.integers(60, 200))
    while t < ticks - 5:
        kind = str(rng.choice(KINDS))
        length = {"spike": (1, 4), "level_shift": (40, 120), "leak": (60, 150), "ddos": (10, 40)}
        low, high = length[kind]
        last = min(ticks - 1, t + int(rng.integers(low, high)))
        events.append((t, last, kind))
        t = last + int(rng.integers(120, 380))
    return events


def host_series(
    seed: int, ticks: int, host: str, site: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Array]:
    """One host's metrics (with features), its incident tickets, and per-tick labels."""
    rng = np.random.default_rng(seed)
    base = float(rng.uniform(50, 400))
    mem_base = float(rng.uniform(30, 55))
    events = _anomalies(rng, ticks)
    label = np.zeros(ticks, dtype=np.int64)
    traffic_mult = np.ones(ticks)
    error_mult = np.ones(ticks)
    latency_mult = np.ones(ticks)
    mem_add = np.zeros(ticks)
    for first, last, kind in events:
        label[first : last + 1] = 1
        span = slice(first, last + 1)
        if kind == "spike":
            traffic_mult[span] *= rng.uniform(2.5, 5.0)
        elif kind == "level_shift":
            traffic_mult[span] *= rng.uniform(1.4, 1.9)
            latency_mult[span] *= rng.uniform(1.2, 1.5)
        elif kind == "leak":
            mem_add[span] = np.arange(last - first + 1) * rng.uniform(0.2, 0.5)
        else:
            traffic_mult[span] *= rng.uniform(3.0, 7.0)
            error_mult[span] *= rng.uniform(5.0, 15.0)
            latency_mult[span] *= rng.uniform(1.8, 3.5)
    phase = 2 * math.pi * np.arange(ticks) / SEASON
    season = 1.0 + 0.5 * np.sin(phase) + 0.15 * np.sin(2 * phase + 1.0)
    traffic = base * season * traffic_mult * rng.lognormal(0, 0.12, ticks)
    cpu = np.clip(15 + 35 * traffic / (base * 1.65) + rng.normal(0, 4, ticks), 1, 100)
    mem = np.clip(mem_base + rng.normal(0, 1.5, ticks) + mem_add, 1, 100)
    errors = rng.poisson(2.0 * error_mult)
    latency = (8 + 6 * cpu / 50) * latency_mult * rng.lognormal(0, 0.1, ticks)

    records: list[dict[str, Any]] = []
    mean, var, lat_mean = traffic[0], (0.2 * traffic[0]) ** 2, latency[0]
    for t in range(ticks):
        z = (traffic[t] - mean) / math.sqrt(var + 1e-6)
        yesterday = traffic[t - SEASON] if t >= SEASON else mean
        records.append(
            {
                "ts": START_TS + t * TICK_S,
                "host": host,
                "traffic_mbps": round(float(traffic[t]), 3),
                "latency_ms": round(float(latency[t]), 3),
                "errors": int(errors[t]),
                "traffic_z": round(float(z), 4),
                "traffic_vs_yesterday": round(math.log(traffic[t] / max(yesterday, 1e-3)), 4),
                "cpu_pct": round(float(cpu[t]), 3),
                "mem_pct": round(float(mem[t]), 3),
                "mem_slope": round(float(mem[t] - mem[max(0, t - 12)]), 4),
                "errors_log": round(math.log1p(float(errors[t])), 4),
                "latency_ratio": round(float(latency[t] / lat_mean), 4),
            }
        )
        diff = traffic[t] - mean
        mean += 0.05 * diff
        var = 0.95 * (var + 0.05 * diff * diff)
        lat_mean += 0.05 * (latency[t] - lat_mean)
    incidents = [
        {
            "host": host,
            "start_ts": START_TS + first * TICK_S,
            "end_ts": START_TS + last * TICK_S,
            "ts": START_TS + (last + 1) * TICK_S,
            "kind": kind,
        }
        for first, last, kind in events
    ]
    return records, incidents, label


def training_query() -> str:
    """Each tick labelled by whether an incident ticket covers it (SQL over the lake)."""
    columns = ", ".join(f"m.{f}" for f in FEATURES)
    return (
        f"SELECT {columns}, m.host, CAST(EXISTS (SELECT 1 FROM incidents i "
        "WHERE i.host = m.host AND m.ts >= i.start_ts AND m.ts <= i.end_ts) AS INTEGER) AS label "
        "FROM host_metrics m ORDER BY m.host, m.ts"
    )


TREND_QUERY = (
    "SELECT host, count(*) AS ticks, round(avg(traffic_mbps), 2) AS mean_mbps, "
    "round(quantile_cont(traffic_mbps, 0.95), 2) AS p95_mbps, "
    "round(regr_slope(traffic_mbps, ts) * 86400, 3) AS mbps_per_day, "
    "round(max(mem_pct), 1) AS max_mem_pct FROM host_metrics GROUP BY host ORDER BY host"
)
INCIDENTS_QUERY = "SELECT kind, count(*) AS incidents FROM incidents GROUP BY kind ORDER BY kind"


def alerts(flagged: Array, quiet: int = 12) -> list[int]:
    """Where an alerting edge raises an alert: a flagged tick after ``quiet`` unflagged ones.

    An open alert is not raised again on every tick.
    """
    out: list[int] = []
    last = -quiet - 1
    for i in np.flatnonzero(flagged):
        if i - last > quiet:
            out.append(int(i))
        last = int(i)
    return out


def nab_score(holdout: Holdout, scores: Array, threshold: float = DETECTION_THRESHOLD) -> float:
    """The normalised NAB score (0: never detects, 100: perfect) over the holdout's hosts."""
    assert holdout.series is not None
    raw = null = perfect = 0.0
    for host in np.unique(holdout.series):
        idx = np.flatnonzero(holdout.series == host)
        y = holdout.y[idx]
        starts = [int(i) for i in np.flatnonzero(np.diff(np.concatenate([[0], y])) == 1)]
        windows = nab.windows(len(idx), starts)
        detections = alerts(scores[idx] >= threshold)
        raw += nab.score(detections, windows, len(idx))
        null += nab.null_score(windows)
        perfect += nab.perfect_score(windows)
    return nab.normalised(raw, null, perfect)


class Network(UseCase):
    name = "network"
    title = "network and IT monitoring"
    model = "netmon"
    sites = (Site("noc-1", "dc-east"),)
    target_cloud_share = 0.1
    edge_budget_ms = 50.0
    hosts_per_site = 12
    sizes = {
        "quick": Sizes(train_units=1_500, live_requests=400, holdout_units=1_500),
        "full": Sizes(train_units=3_000, live_requests=2_000, holdout_units=3_000),
    }

    def records(self, seed: int, units: int, site: Site) -> Records:
        metrics: list[dict[str, Any]] = []
        incidents: list[dict[str, Any]] = []
        for h in range(self.hosts_per_site):
            host = f"{site.site}-host-{h:02d}"
            m, i, _ = host_series(seed * 100 + h, units, host, site.site)
            metrics += m
            incidents += i
        return {"host_metrics": metrics, "incidents": incidents}

    def training_spec(self, seed: int) -> dict[str, Any]:
        return {
            "model_name": self.model,
            "query": training_query(),
            "features": list(FEATURES),
            "label": "label",
            "group": "host",
            "edge_family": "tree",
            "cloud_family": "gbm",
            "seed": seed,
        }

    def holdout(self, seed: int, units: int) -> Holdout:
        xs, ys, series = [], [], []
        for h in range(self.hosts_per_site):
            host = f"holdout-host-{h:02d}"
            records, _, label = host_series(seed * 100 + h, units, host, "holdout")
            xs.append([[r[f] for f in FEATURES] for r in records])
            ys.append(label)
            series += [h] * units
        x = np.asarray([row for rows in xs for row in rows], dtype=np.float32)
        return Holdout(x, np.concatenate(ys), np.asarray(series))

    def quality(self, holdout: Holdout, scores: Array) -> Quality:
        predicted = (scores >= DETECTION_THRESHOLD).astype(np.int64)
        return Quality(
            "nab_score",
            nab_score(holdout, scores),
            {
                "pr_auc": float(average_precision_score(holdout.y, scores)),
                "f1": float(f1_score(holdout.y, predicted, zero_division=0)),
                "anomaly_rate": float(holdout.y.mean()),
            },
        )

    def analytics(self) -> dict[str, str]:
        return {"traffic trend per host": TREND_QUERY, "incidents by kind": INCIDENTS_QUERY}
