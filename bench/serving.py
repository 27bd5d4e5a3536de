"""The edge's serving faces against bare ones, under an external load generator (``wrk``).

- v2 inference: a real edge agent (enrolled, site key, router, metrics, health gates, the demo's
  pm edge model) against a bare FastAPI + onnxruntime endpoint serving the same ONNX file (one
  uvicorn process, same onnxruntime thread settings), both plain HTTP on loopback, 8 rows per
  request, 8 connections, rounds alternated, medians; latency from wrk's distribution. The bare
  endpoint is also driven by a Python httpx client (4 threads) to show that wrk saturates it;
- the cloud's v2 inference (its TLS API, an admin's bearer token, the demo's pm cloud variant)
  against the same bare endpoint serving that file over TLS with the cloud's certificate;
- each server's CPU per request (``/proc``), which shows where the time goes when the machine
  is shared, and the load generator's own CPU (wrk must not be the bottleneck);
- the edge's idle RSS with the demo models loaded;
- record ingest: ``POST /api/v1/streams/{stream}/records`` with 1,000-record bodies (JSON and
  Arrow IPC, every record new) by wrk, over raw SQLite ``executemany`` of the same records with
  the edge store's durability (WAL, synchronous=FULL, one transaction per 1,000-record body;
  each record's JSON as a row), for as long as each HTTP run, rounds alternated (JSON, raw,
  Arrow), medians. The edge's sync to the cloud is held (a closed sync window) while ingest is
  measured: the figure is the ingest face's, not the uploader's competing for the two cores;
- what the other serving modules measure (binary tensors, gRPC, batching, a remote tier),
  merged in when they are present.

Usage: python bench/serving.py [--quick] [--only infer|ingest]

``--only`` measures one face and updates only its keys in ``results/serving.json`` (the other
keys stay as their last run left them; ``notes.parts`` says when each part was measured).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _wrk
from _common import RESULTS, median, show, write
from infer import demo_models, http_rps, infer_body, plant_records, rss_mb

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port
from hybridai.demo.simulator import FEATURES, Plant
from hybridai.edge.ingest.formats import ARROW, JSON, encode_arrow

CONNECTIONS = 8
INGEST_BATCH = 1000
PARTS = ("infer", "ingest")
OTHER_MODULES = ("serving_binary", "serving_grpc", "serving_batching", "serving_remote")
TARGETS = {
    "edge_vs_bare_rps_ratio": ">= 0.9",
    "edge_p50_ms": "<= bare_p50_ms + 0.3",
    "client_saturates_bare": "true",
    "edge_rss_mb": "<= 150",
    "http_ingest_json_ratio": ">= 1",
    "http_ingest_arrow_ratio": ">= 2",
}

BARE_APP = """
import sys
import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(open(sys.argv[2], "rb").read(), options,
                               providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
app = FastAPI()

@app.get("/v2/health/ready")
def ready():
    return {"ready": True}

@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    body = await request.json()
    tensor = body["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    results = session.run(names, {tensor["name"]: x})
    return {"model_name": name, "outputs": [
        {"name": n, "shape": list(r.shape), "datatype": "FP32" if r.dtype == np.float32
         else "INT64", "data": r.reshape(-1).tolist()} for n, r in zip(names, results)]}

tls = sys.argv[3:5] or [None, None]
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, timeout_keep_alive=75, ssl_certfile=tls[0], ssl_keyfile=tls[1])
"""


def serve_bare(
    model: Path, tls: tuple[Path, Path] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The bare endpoint: FastAPI + onnxruntime, nothing else, as its own uvicorn process."""
    port = free_port()
    args = [sys.executable, "-c", BARE_APP, str(port), str(model), *map(str, tls or ())]
    # its own session, as the fleet's processes: the kernel schedules both alike (autogroups)
    process = subprocess.Popen(args, start_new_session=True)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    def up() -> bool:
        try:
            answer = httpx.get(f"{url}/v2/health/ready", timeout=1, verify=False)
            return answer.status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the bare endpoint", up, 30)
    return process, url


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_s(pid: int) -> float:
    """How long the process's main thread (the event loop) has waited for a core so far."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


@dataclass(frozen=True)
class Loaded:
    """One wrk run against one server, with the CPU both sides used meanwhile."""

    run: _wrk.WrkRun
    server_cpu_s: float
    client_cpu_s: float
    server_wait_s: float  # the event loop ready to run but waiting for a core (other jobs)

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / max(1, self.run.requests) * 1e6


def loaded(pid: int, url: str, payload: bytes, headers: dict[str, str], seconds: float) -> Loaded:
    """wrk against ``url`` for ``seconds``; the server's (``pid``) and wrk's CPU meanwhile."""
    server, client = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = runqueue_wait_s(pid)
    run = _wrk.run(url, body=payload, headers=headers, seconds=seconds, connections=CONNECTIONS)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_s = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
    return Loaded(run, cpu_seconds(pid) - server, client_s, runqueue_wait_s(pid) - waited)


def start_edge(work: Path, models: dict[str, bytes]) -> tuple[LocalFleet, Any]:
    """A cloud and one enrolled edge serving the demo's pm model (edge variant)."""
    fleet = LocalFleet(work)
    fleet.start_cloud()
    edge = fleet.start_edge("edge-1", "plant-a")
    fleet.wait_enrolled(1)
    files = {v: (f"{v}.onnx", data, "application/octet-stream") for v, data in models.items()}
    info = fleet.call("POST", "/api/v1/models/pm/versions", files=files)
    fleet.call("PUT", "/api/v1/deployments/pm", json={"name": "pm", "version": info["version"]})
    wait_for("the edge to load pm", lambda: fleet.serving("pm", info["version"]), 90)
    return fleet, edge


def base_records() -> list[dict[str, Any]]:
    plant = Plant([f"m{i:02d}" for i in range(8)], seed=3, start_ts=1.7e9)
    records: list[dict[str, Any]] = []
    while len(records) < INGEST_BATCH:
        records += plant.step()[0]
    return records[:INGEST_BATCH]


def ingest_bodies(work: Path, name: str, first: int, count: int) -> list[Path]:
    """``count`` files of 1,000-record bodies, every record new (shifted times)."""
    base = base_records()
    paths = []
    for n in range(first, first + count):
        batch = [{**rec, "ts": rec["ts"] + n * 1e5} for rec in base]
        path = work / f"ingest-{name}-{n}.body"
        path.write_bytes(
            json.dumps({"records": batch}).encode() if name == "json" else encode_arrow(batch)
        )
        paths.append(path)
    return paths


def sqlite_floor(
    work: Path, body_files: list[Path], round_no: int, seconds: float
) -> tuple[float, float]:
    """Raw SQLite ``executemany`` of the same records with the edge store's durability.

    WAL, synchronous=FULL, one transaction (one fsync) per 1,000-record body, each record's
    JSON as a row; bodies in turn for ``seconds`` (as long as an HTTP run). The bodies are
    parsed outside the timed part: the floor is SQLite's, not the JSON parser's. Returns
    records/s and the CPU microseconds this process spent per record in the timed part.
    """
    db = sqlite3.connect(work / f"raw-{round_no}.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS r (id INTEGER PRIMARY KEY, ts REAL, payload TEXT)")
    stored, elapsed, cpu = 0, 0.0, 0.0
    for body_file in body_files:
        batch = json.loads(body_file.read_bytes())["records"]
        started, cpu_started = time.perf_counter(), time.process_time()
        with db:
            db.executemany(
                "INSERT INTO r (ts, payload) VALUES (?, ?)",
                [(r["ts"], json.dumps(r, separators=(",", ":"))) for r in batch],
            )
        elapsed += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        stored += len(batch)
        if elapsed >= seconds:
            break
    db.close()
    return stored / elapsed, cpu / stored * 1e6


def ingest_rate(
    url: str, headers: dict[str, str], files: list[Path], seconds: float, pid: int
) -> tuple[float, float]:
    """Records/s the edge (``pid``) stored (its answers' ``accepted``), and its CPU us/record."""
    cpu = cpu_seconds(pid)
    run = _wrk.run(
        f"{url}/api/v1/streams/bench/records",
        bodies=files,
        headers=headers,
        seconds=seconds,
        connections=2,
        count_accepted=True,
    )
    if run.requests > len(files):
        raise RuntimeError(f"wrk sent {run.requests} bodies, only {len(files)} are new")
    return run.accepted / run.seconds, (cpu_seconds(pid) - cpu) / max(1, run.accepted) * 1e6


def others(quick: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Metrics of the other serving benches' ``measure(quick)``, when their modules exist."""
    merged: dict[str, Any] = {}
    status: dict[str, str] = {}
    for module in OTHER_MODULES:
        try:
            measure = importlib.import_module(module).measure
        except ImportError:
            status[module] = "absent"
            continue
        try:
            merged.update(measure(quick))
            status[module] = "ok"
        except Exception as exc:  # one failing part must not hide the others' figures
            status[module] = f"failed: {type(exc).__name__}: {exc}"
    return merged, status


def _summary(prefix: str, runs: list[Loaded]) -> dict[str, Any]:
    return {
        f"{prefix}_rps": round(median([r.run.rps for r in runs]), 1),
        f"{prefix}_p50_ms": round(median([r.run.p50_ms for r in runs]), 3),
        f"{prefix}_p99_ms": round(median([r.run.p99_ms for r in runs]), 3),
        f"{prefix}_cpu_us_per_request": round(median([r.cpu_us_per_request for r in runs]), 1),
        f"{prefix}_server_cpu_cores": round(
            median([r.server_cpu_s / r.run.seconds for r in runs]), 3
        ),
    }


def measure_infer(work: Path, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The edge's and the cloud's v2 faces against bare endpoints, and the edge's idle RSS."""
    rounds, seconds = (1, 3.0) if quick else (5, 8.0)
    load_before = os.getloadavg()[0]
    runs: dict[str, list[Loaded]] = {"edge": [], "bare": [], "cloud": [], "bare_tls": []}
    python_bare: list[float] = []
    placements: dict[str, int] = {}
    models = demo_models(work)
    (work / "edge.onnx").write_bytes(models["edge"])
    (work / "cloud.onnx").write_bytes(models.get("cloud", models["edge"]))
    one_tick = plant_records(1)[0]
    rows = np.asarray([[r[f] for f in FEATURES] for r in one_tick], dtype=np.float32)
    body: dict[str, Any] = infer_body(rows)
    body.pop("parameters")  # the full placement path: no hint, the model's policy decides
    payload = json.dumps(body).encode()
    bare, bare_url = serve_bare(work / "edge.onnx")
    fleet, edge = start_edge(work, models)
    pki = work / "cloud" / "pki"  # the bare TLS endpoint wears the cloud's certificate
    bare_tls, bare_tls_url = serve_bare(
        work / "cloud.onnx", (pki / "server.crt", pki / "server.key")
    )
    try:
        assert fleet.cloud is not None
        cloud_url = fleet.cloud.url
        token = (work / "cloud" / "admin.token").read_text().strip()
        bearer = {"Authorization": f"Bearer {token}"}
        edge_url, auth = _wrk.split_credentials(edge.url)
        with (
            httpx.Client(headers=auth, timeout=10) as http,
            httpx.Client(headers=bearer, verify=False) as tls,
        ):
            for _ in range(200):  # warm all; the router learns its estimates
                reply = http.post(f"{edge_url}/v2/models/pm/infer", content=payload)
                reply.raise_for_status()
                where = reply.json()["parameters"]["placement"]
                placements[where] = placements.get(where, 0) + 1
                http.post(f"{bare_url}/v2/models/pm/infer", content=payload).raise_for_status()
                tls.post(f"{cloud_url}/v2/models/pm/infer", content=payload).raise_for_status()
                tls.post(f"{bare_tls_url}/v2/models/pm/infer", content=payload).raise_for_status()
        time.sleep(1.0)
        idle_rss = rss_mb(edge.process.pid)
        json_type = {"Content-Type": "application/json"}
        targets = {
            "edge": (edge.process.pid, edge_url, {**json_type, **auth}),
            "bare": (bare.pid, bare_url, json_type),
            "cloud": (fleet.cloud.process.pid, cloud_url, {**json_type, **bearer}),
            "bare_tls": (bare_tls.pid, bare_tls_url, json_type),
        }
        for _ in range(rounds):  # alternated: drifts in machine load hit all alike
            for name, (pid, url, headers) in targets.items():
                runs[name].append(
                    loaded(pid, f"{url}/v2/models/pm/infer", payload, headers, seconds)
                )
            python_bare.append(http_rps(bare_url, body, min(seconds, 3.0)))
    finally:
        for process in (bare, bare_tls):
            process.terminate()
            process.wait(10)
        fleet.close()
    edge_m, bare_m = _summary("edge", runs["edge"]), _summary("bare", runs["bare"])
    cloud_m, tls_m = _summary("cloud", runs["cloud"]), _summary("bare_tls", runs["bare_tls"])
    wrk_cores = [r.client_cpu_s / r.run.seconds for rs in runs.values() for r in rs]
    metrics: dict[str, Any] = {
        **edge_m,
        **bare_m,
        "edge_vs_bare_rps_ratio": round(edge_m["edge_rps"] / bare_m["bare_rps"], 3),
        "edge_vs_bare_cpu_ratio": round(
            edge_m["edge_cpu_us_per_request"] / bare_m["bare_cpu_us_per_request"], 3
        ),
        "python_client_bare_rps": round(median(python_bare), 1),
        "client_saturates_bare": bool(bare_m["bare_rps"] > median(python_bare)),
        "wrk_cpu_cores": round(max(wrk_cores), 3),
        **cloud_m,
        **tls_m,
        "cloud_vs_bare_rps_ratio": round(cloud_m["cloud_rps"] / tls_m["bare_tls_rps"], 3),
        "cloud_vs_bare_cpu_ratio": round(
            cloud_m["cloud_cpu_us_per_request"] / tls_m["bare_tls_cpu_us_per_request"], 3
        ),
        "edge_rss_mb": round(idle_rss, 1),
    }
    notes = {
        "rounds": rounds,
        "seconds_per_run": seconds,
        "load_generator": "wrk -t1 -c8 (infer), -t1 -c2 (ingest), lua body and done hook; "
        "wrk_cpu_cores: the most CPU wrk used in any run (well under one core: not the limit)",
        "python_client": "httpx, 4 threads, against the bare endpoint",
        "model": "demo pm edge variant (ONNX), 8 rows per request, no placement hint",
        "edge": "enrolled edge agent, plain HTTP LAN port, site key (basic auth)",
        "cloud": "the cloud's TLS API, admin bearer token, pm cloud variant; bare_tls: the bare "
        "endpoint on that file over TLS with the cloud's certificate (1 onnxruntime thread; "
        "the cloud loads with 2)",
        "cpu_us_per_request": "server process CPU (user+system, all threads, /proc) over the "
        "run divided by requests answered: steadier than requests/s when other jobs share "
        "the cores",
        "machine_load": f"{os.cpu_count()} cores; load average {load_before:.1f} before the "
        f"infer runs, {os.getloadavg()[0]:.1f} after: when other jobs share the machine, each "
        "server waits for a core for much of each run (*_runqueue_wait_share), and requests/s "
        "and latency measure that contention as much as the server; CPU per request is the "
        "steadier comparison",
        "runqueue_wait_share": "per run, the share of its time the server's event loop was "
        "ready but waiting for a core (/proc/PID/schedstat): near 0 on a quiet machine; the "
        "requests/s of a run with a large share measure the machine's other jobs",
        "warm_up_placements": placements,
        **{f"{name}_rps_rounds": [round(r.run.rps, 1) for r in rs] for name, rs in runs.items()},
        **{
            f"{name}_runqueue_wait_share": [round(r.server_wait_s / r.run.seconds, 2) for r in rs]
            for name, rs in runs.items()
        },
    }
    return metrics, notes


def closed_window() -> str:
    """A local-time sync window that opens hours from now: bulk sync holds while we measure."""
    opens = time.localtime(time.time() + 3 * 3600)
    closes = time.localtime(time.time() + 4 * 3600)
    return f"{opens.tm_hour:02d}:00-{closes.tm_hour:02d}:00"


def warm_up(edge_url: str, auth: dict[str, str]) -> None:
    """A few bodies of each format first: what a long-running edge imported and cached long ago.

    They go to their own stream, so the measured one starts empty, and they wait for the
    desired state (which brings the closed sync window) to be applied.
    """
    records = [{**r, "ts": r["ts"] - 1e7} for r in base_records()]
    with httpx.Client(headers=auth, timeout=60) as http:
        for i in range(5):
            batch = [{**r, "ts": r["ts"] - i} for r in records]
            for media, body in (
                (JSON, json.dumps({"records": batch}).encode()),
                (ARROW, encode_arrow([{**r, "ts": r["ts"] - 0.5} for r in batch])),
            ):
                path = f"{edge_url}/api/v1/streams/warmup/records"
                http.post(path, content=body, headers={"Content-Type": media}).raise_for_status()
    time.sleep(3.0)


def edge_store(edge_url: str, auth: dict[str, str]) -> dict[str, int]:
    status = httpx.get(f"{edge_url}/api/v1/status", headers=auth, timeout=30).json()
    keys = ("records_ingested", "records_synced", "backlog_records")
    return {k: int(status["store"][k]) for k in keys}


def measure_ingest(work: Path, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ingest face (JSON, Arrow IPC) against raw SQLite, rounds alternated."""
    rounds, seconds, n_bodies = (2, 2.0, 600) if quick else (5, 3.0, 900)
    json_rates: list[float] = []
    arrow_rates: list[float] = []
    raw_rates: list[float] = []
    cpu: dict[str, list[float]] = {"json": [], "arrow": [], "raw": []}  # us per record
    # Self-healing off: it would open the closed window below to drain the growing backlog.
    rules = work / "no-healing.yaml"
    rules.write_text("max_actions_per_hour: 0\nrules: []\n")
    fleet = LocalFleet(work, cloud_env={"HYBRIDAI_CLOUD_HEALING_RULES_FILE": str(rules)})
    try:
        fleet.start_cloud()
        # The fleet's sync window, closed while we measure (the edge's desired state brings it)
        fleet.call("PATCH", "/api/v1/fleet-config/fleet", json={"sync_window": closed_window()})
        edge = fleet.start_edge("edge-1", "plant-a")
        fleet.wait_enrolled(1)
        edge_url, auth = _wrk.split_credentials(edge.url)
        warm_up(edge_url, auth)
        before = edge_store(edge_url, auth)
        first = 0
        for r in range(rounds):  # alternated: drifts in machine load hit all three alike
            for name, media, rates in (("json", JSON, json_rates), ("arrow", ARROW, arrow_rates)):
                files = ingest_bodies(work, name, first, n_bodies)
                first += n_bodies
                headers = {"Content-Type": media, **auth}
                rate, used = ingest_rate(edge_url, headers, files, seconds, edge.process.pid)
                rates.append(rate)
                cpu[name].append(used)
                if name == "json":
                    rate, used = sqlite_floor(work, files, r, seconds)
                    raw_rates.append(rate)
                    cpu["raw"].append(used)
                for path in files:
                    path.unlink()
        after = edge_store(edge_url, auth)
    finally:
        fleet.close()
    floor = median(raw_rates)
    metrics = {
        "http_ingest_json_records_per_s": round(median(json_rates), 0),
        "http_ingest_arrow_records_per_s": round(median(arrow_rates), 0),
        "sqlite_raw_records_per_s": round(floor, 0),
        "http_ingest_json_ratio": round(median(json_rates) / floor, 3),
        "http_ingest_arrow_ratio": round(median(arrow_rates) / floor, 3),
        # CPU per record, whatever the machine's load: the edge process (all its threads,
        # HTTP included) against the baseline's executemany and its JSON rows
        "http_ingest_json_cpu_us_per_record": round(median(cpu["json"]), 2),
        "http_ingest_arrow_cpu_us_per_record": round(median(cpu["arrow"]), 2),
        "sqlite_raw_cpu_us_per_record": round(median(cpu["raw"]), 2),
        "http_ingest_json_cpu_ratio": round(median(cpu["json"]) / median(cpu["raw"]), 3),
        "http_ingest_arrow_cpu_ratio": round(median(cpu["arrow"]) / median(cpu["raw"]), 3),
    }
    notes = {
        "ingest": "1,000-record bodies, every record new, wrk -t1 -c2; raw SQLite: WAL, "
        "synchronous=FULL, executemany, one transaction per body, each record's JSON as a row, "
        "as long as each HTTP run; rounds alternated JSON, raw, Arrow; medians; the edge's "
        "bulk sync held by a closed sync window (self-healing off, or it would open it) while "
        "measuring",
        "ingest_rounds": rounds,
        "ingest_seconds_per_run": seconds,
        "ingest_json_rounds": [round(x) for x in json_rates],
        "ingest_arrow_rounds": [round(x) for x in arrow_rates],
        "sqlite_raw_rounds": [round(x) for x in raw_rates],
        "ingest_cpu_us_per_record_rounds": {k: [round(x, 2) for x in v] for k, v in cpu.items()},
        # what the edge held before and after: every record stored, none synced meanwhile
        "ingest_edge_store_before": before,
        "ingest_edge_store_after": after,
    }
    return metrics, notes


def last_results() -> dict[str, Any]:
    """What the last run wrote (``--only`` keeps the other part's figures from it)."""
    try:
        last: dict[str, Any] = json.loads((RESULTS / "serving.json").read_text())
    except (OSError, ValueError):
        return {}
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument(
        "--only", choices=PARTS, help="measure one face; keep the other's last figures"
    )
    args = parser.parse_args()
    parts = [args.only] if args.only else list(PARTS)
    metrics: dict[str, Any] = {}
    notes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        for part in parts:
            work = Path(tmp) / part
            work.mkdir()
            measure = measure_infer if part == "infer" else measure_ingest
            part_metrics, part_notes = measure(work, args.quick)
            metrics.update(part_metrics)
            notes.update(part_notes)
    if "infer" in parts:
        other_metrics, other_status = others(args.quick)
        metrics.update(other_metrics)
        notes["other_modules"] = other_status
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.only:
        last = last_results()
        metrics = {**last.get("metrics", {}), **metrics}
        notes = {**last.get("notes", {}), **notes}
    notes["parts"] = {**notes.get("parts", {}), **dict.fromkeys(parts, when)}
    notes["targets"] = TARGETS
    title = "bench/serving" + (" (quick)" if args.quick else "")
    show(title, dict(metrics.items()))
    for key, target in TARGETS.items():
        print(f"  target {key}: {target}  (measured {metrics.get(key)})")
    print(write("serving", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
