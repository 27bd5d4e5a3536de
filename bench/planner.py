"""The planner: its simulator against a real local fleet, and how fast it simulates a fleet-day.

Validation (``p50_rel_error``, ``p95_rel_error``, ``cloud_share_abs_error``): one site with one
edge agent and the cloud as real processes on loopback, the edge's cloud link given a
propagation delay by its ``NetLink`` relay (chunks pipelined, as ``tc netem delay``), the demo's
pm model trained by the product's own training job and deployed as a cascade whose threshold
escalates some of the requests. First the component times are measured one request at a
time (edge-hinted requests; cloud-hinted ones over the undelayed link, less the edge's share)
and become the scenario's empirical service-time distributions; the link's delay
becomes its RTT; the confidences of the request rows, measured with ONNX Runtime, become the
model's confidence profile. Then the simulator runs the scenario, and the live edge gets the
very same requests: the simulated arrival times (open loop, Poisson) and, for each, a row whose
measured confidence is the one the simulator drew. Errors are simulated vs measured.

Speed (``sim_day_50_sites_s``): a day of examples/predictive-maintenance (50 plants, four
policies) with ``max_sites_per_shape`` aggregation; its baseline in the same run: one hour of
the same fleet simulated site by site against aggregated (``aggregation_p95_rel_error``), so
the shortcut is shown to keep the percentiles.

Usage: python bench/planner.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime

sys.path.insert(0, str(Path(__file__).parent))
import _wrk
from _common import percentile, show, write
from infer import demo_models, plant_records

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import FEATURES
from hybridai.orchestrator import CascadeRule, Measure
from hybridai.planner.scenario import Scenario, load
from hybridai.planner.simulator import Simulation, simulate
from hybridai.protocol.placement import PolicyKind

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "predictive-maintenance" / "scenario.yaml"
DELAY_S = 0.02  # each way: a 40 ms round trip
ESCALATE_SHARE = 0.25


def confidences(edge_onnx: bytes, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each row's cascade confidence (margin), as the edge computes it on one-row requests."""
    session = onnxruntime.InferenceSession(edge_onnx, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"input": rows}), strict=True))
    probabilities = out.get("probabilities", out[names[-1]])
    rule = CascadeRule(Measure.MARGIN)
    return np.asarray([rule.confidence(p) for p in np.asarray(probabilities)])


def between(values: np.ndarray[Any, Any], share: float) -> float:
    """A threshold halfway between two distinct confidences, escalating about ``share``.

    A tree model's confidences take few distinct values: a threshold on one of them would
    decide by rounding whether hundreds of rows escalate.
    """
    distinct = np.unique(values)
    below = np.asarray([np.mean(values < v) for v in distinct])
    k = int(np.argmin(np.abs(below - share)))
    return float((distinct[k - 1] + distinct[k]) / 2) if k > 0 else float(distinct[0] / 2)


def body(row: np.ndarray[Any, Any], placement: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "inputs": [
            {"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}
        ]
    }
    if placement is not None:
        request["parameters"] = {"placement": placement}
    return request


def timed(http: httpx.Client, url: str, request: dict[str, Any]) -> float:
    began = time.perf_counter()
    reply = http.post(url, json=request)
    reply.raise_for_status()
    return (time.perf_counter() - began) * 1000


def scenario(
    edge_ms: list[float],
    cloud_ms: list[float],
    samples: list[float],
    threshold: float,
    rate: float,
    duration_s: float,
) -> Scenario:
    """The live fleet as a scenario: measured components, the relay's delay as the RTT."""
    return Scenario.model_validate(
        {
            "name": "live fleet, one site",
            "seed": 16,
            "duration_s": duration_s,
            "sites": [
                {
                    "name": "plant-a",
                    "devices": [
                        {"name": "edge-1", "kind": "edge-server", "cores": 1, "models": ["pm"]}
                    ],
                    "link": {
                        "rtt_ms": {"kind": "constant", "value": 2 * DELAY_S * 1000},
                        "bandwidth_mbps": 10_000,
                    },
                }
            ],
            "cloud": {"instances": 1, "workers_per_instance": 8},
            "models": [
                {
                    "name": "pm",
                    "edge": {
                        "service_ms": {"kind": "empirical", "samples": edge_ms},
                        "confidence": {"samples": samples},
                    },
                    "cloud": {"service_ms": {"kind": "empirical", "samples": cloud_ms}},
                    "cascade_threshold": threshold,
                }
            ],
            "workloads": [
                {
                    "name": "scoring",
                    "model": "pm",
                    "device": "edge-1",
                    "arrival": {"rate_per_s": rate},
                    "payload_bytes": {"kind": "constant", "value": 300},
                }
            ],
            "sync": {"bytes_per_request": 0, "hard_example_bytes": 0, "interval_s": 3600},
            "policies": ["cascade"],
        }
    )


async def replay(
    url: str,
    auth: dict[str, str],
    times: np.ndarray[Any, Any],
    requests: list[dict[str, Any]],
) -> tuple[list[float], list[str], list[dict[str, Any]]]:
    """Send each request at its time (open loop); each one's latency, where it ran, why."""
    latencies = [float("nan")] * len(times)
    places = [""] * len(times)
    said: list[dict[str, Any]] = [{} for _ in times]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(headers=auth, timeout=30, limits=limits) as http:

        async def one(k: int) -> None:
            began = time.perf_counter()
            reply = await http.post(url, json=requests[k])
            latencies[k] = (time.perf_counter() - began) * 1000
            if reply.is_success:
                said[k] = reply.json()["parameters"]
                places[k] = said[k]["placement"]
            else:
                places[k] = "error"

        start = time.perf_counter()
        tasks = []
        for k, t in enumerate(times.tolist()):
            wait = start + t - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)
    return latencies, places, said


def validate(quick: bool) -> tuple[dict[str, float], dict[str, Any]]:
    calibration_n, rate, duration_s = (150, 15.0, 30.0) if quick else (400, 20.0, 90.0)
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        work = Path(tmp)
        models = demo_models(work)
        telemetry, _ = plant_records(60, seed=5)
        rows = np.asarray([[r[f] for f in FEATURES] for r in telemetry], dtype=np.float32)
        conf = confidences(models["edge"], rows)
        threshold = between(conf, ESCALATE_SHARE)
        # Self-healing off: its edge-while-link-slow rule would answer at the edge while the
        # delayed link is slow, an operations override the planner does not simulate.
        rules = work / "no-healing.yaml"
        rules.write_text("max_actions_per_hour: 0\nrules: []\n")
        fleet = LocalFleet(work, cloud_env={"HYBRIDAI_CLOUD_HEALING_RULES_FILE": str(rules)})
        try:
            fleet.start_cloud()
            edge = fleet.start_edge("edge-1", "plant-a")
            fleet.wait_enrolled(1)
            files = {
                v: (f"{v}.onnx", data, "application/octet-stream") for v, data in models.items()
            }
            version = fleet.call("POST", "/api/v1/models/pm/versions", files=files)["version"]
            policy = {"kind": "cascade", "cascade": {"measure": "margin", "threshold": threshold}}
            fleet.call(
                "PUT",
                "/api/v1/deployments/pm",
                json={"name": "pm", "version": version, "policy": policy},
            )
            wait_for("the edge to load pm", lambda: fleet.serving("pm", version), 90)
            edge_url, auth = _wrk.split_credentials(edge.url)
            url = f"{edge_url}/v2/models/pm/infer"
            with httpx.Client(headers=auth, timeout=30) as http:
                for k in range(30):  # warm both paths and their connections
                    timed(http, url, body(rows[k], "edge"))
                    timed(http, url, body(rows[k], "cloud"))
                    edge_ms, cloud_total = [], []
                for k in range(calibration_n):
                    edge_ms.append(timed(http, url, body(rows[k % len(rows)], "edge")))
                    cloud_total.append(timed(http, url, body(rows[k % len(rows)], "cloud")))
            # A cloud call seen from the edge: what a cloud-hinted request took beyond the edge's
            # own HTTP handling (an edge-hinted request's typical time), no delay added.
            overhead = float(np.median(edge_ms))
            cloud_ms = [max(c - overhead, 0.1) for c in cloud_total]
            spec = scenario(edge_ms, cloud_ms, conf.tolist(), threshold, rate, duration_s)
            sim = Simulation(spec, PolicyKind.CASCADE)
            stream = sim.streams[0]
            by_confidence: dict[float, int] = {}
            for k, c in enumerate(conf.tolist()):
                by_confidence.setdefault(c, k)
            requests = [body(rows[by_confidence[float(c)]]) for c in stream.confidence]
            times = stream.times.copy()
            simulated = sim.run()
            fleet.links["edge-1"].latency_s = DELAY_S
            with httpx.Client(headers=auth, timeout=30) as http:
                for k in range(10):  # the edge's connections to the cloud, over the slow link
                    timed(http, url, body(rows[k], "cloud"))
            latencies, places, said = asyncio.run(replay(url, auth, times, requests))
        finally:
            fleet.close()
    live = np.asarray(latencies)
    live_ok = live[~np.isnan(live)]
    sim_lat = simulated.latency_ms[~simulated.failed]
    live_share = float(np.mean([p == "cloud" for p in places]))
    figures = simulated.summary()
    sim_p50, sim_p95 = figures["latency_p50_ms"], figures["latency_p95_ms"]
    live_p50, live_p95 = percentile(live_ok.tolist(), 50), percentile(live_ok.tolist(), 95)
    metrics = {
        "p50_rel_error": round(abs(sim_p50 - live_p50) / live_p50, 4),
        "p95_rel_error": round(abs(sim_p95 - live_p95) / live_p95, 4),
        "cloud_share_abs_error": round(abs(figures["cloud_share"] - live_share), 4),
    }
    notes = {
        "requests": len(times),
        "rate_per_s": rate,
        "duration_s": duration_s,
        "link_delay_s_each_way": DELAY_S,
        "threshold": threshold,
        "sim_p50_ms": round(sim_p50, 2),
        "live_p50_ms": round(live_p50, 2),
        "sim_p95_ms": round(sim_p95, 2),
        "live_p95_ms": round(live_p95, 2),
        "sim_p99_ms": round(float(np.percentile(sim_lat, 99)), 2),
        "live_p99_ms": round(float(np.percentile(live_ok, 99)), 2),
        "sim_cloud_share": round(figures["cloud_share"], 4),
        "live_cloud_share": round(live_share, 4),
        "live_errors": int(sum(p == "error" for p in places)),
        "live_escalation_failed": int(sum(bool(p.get("escalation_failed")) for p in said)),
        "live_degraded": int(sum(bool(p.get("degraded")) for p in said)),
        "live_escalated": int(sum(bool(p.get("escalated")) for p in said)),
        "live_reasons": dict(Counter(str(p.get("reason")) for p in said)),
        "sim_reasons": dict(Counter(simulated.reason)),
        "live_should_escalate_but_did_not": int(
            sum(
                float(c) < threshold and not p.get("escalated")
                for p, c in zip(said, stream.confidence, strict=True)
            )
        ),
        "live_confidence_mismatches": int(
            sum(
                p.get("confidence") is not None and abs(p["confidence"] - float(c)) > 1e-4
                for p, c in zip(said, stream.confidence, strict=True)
            )
        ),
        "calibration_requests": calibration_n,
        "edge_ms_median": round(float(np.median(edge_ms)), 2),
        "cloud_call_ms_median": round(float(np.median(cloud_ms)), 2),
    }
    return metrics, notes


def speed(quick: bool) -> tuple[dict[str, float], dict[str, Any]]:
    example = load(EXAMPLE)
    per_shape = 2 if quick else 3
    day = example.model_copy(
        update={
            "simulation": example.simulation.model_copy(update={"max_sites_per_shape": per_shape})
        }
    )
    began = time.perf_counter()
    runs = simulate(day)
    day_s = time.perf_counter() - began
    every_site = example.simulation.model_copy(update={"max_sites_per_shape": None})
    hour = example.model_copy(
        update={"duration_s": 600.0 if quick else 3600.0, "simulation": every_site}
    )
    hour_aggregated = day.model_copy(update={"duration_s": hour.duration_s})
    began = time.perf_counter()
    [full] = simulate(hour, [PolicyKind.CASCADE])
    full_s = time.perf_counter() - began
    [aggregated] = simulate(hour_aggregated, [PolicyKind.CASCADE])
    f, a = full.summary(), aggregated.summary()
    requests = sum(len(r.arrival) for r in runs)
    metrics = {
        "sim_day_50_sites_s": round(day_s, 2),
        "aggregation_p95_rel_error": round(
            abs(a["latency_p95_ms"] - f["latency_p95_ms"]) / f["latency_p95_ms"], 4
        ),
        "sim_requests_per_s": round(len(full.arrival) / full_s, 1),
    }
    notes = {
        "day": f"{EXAMPLE.relative_to(ROOT)}: 50 plants, 4 policies, 86,400 s",
        "max_sites_per_shape": per_shape,
        "day_requests_simulated": requests,
        "day_requests_represented": sum(r.summary()["requests"] for r in runs),
        "baseline_window_s": hour.duration_s,
        "full_p50_ms": round(f["latency_p50_ms"], 3),
        "aggregated_p50_ms": round(a["latency_p50_ms"], 3),
        "full_p95_ms": round(f["latency_p95_ms"], 3),
        "aggregated_p95_ms": round(a["latency_p95_ms"], 3),
        "full_cloud_share": round(f["cloud_share"], 4),
        "aggregated_cloud_share": round(a["cloud_share"], 4),
    }
    return metrics, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument("--skip-live", action="store_true", help="only the simulator's speed")
    parser.add_argument("--skip-speed", action="store_true", help="only the live validation")
    args = parser.parse_args()
    metrics, notes = ({}, {}) if args.skip_speed else speed(args.quick)
    if not args.skip_live:
        live_metrics, live_notes = validate(args.quick)
        metrics = {**live_metrics, **metrics}
        notes = {**live_notes, **notes}
    notes["load_average_1_5_15"] = [round(x, 1) for x in os.getloadavg()]  # 2 cores, shared
    notes["targets"] = {
        "p50_rel_error": 0.10,
        "p95_rel_error": 0.15,
        "cloud_share_abs_error": 0.03,
        "sim_day_50_sites_s": 60,
    }
    show("bench/planner" + (" (quick)" if args.quick else ""), metrics)
    print(write("planner", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
