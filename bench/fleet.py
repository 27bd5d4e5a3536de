"""Fleet scale: how many devices one cloud replica carries, and what a second replica adds.

N lightweight simulated agents (asyncio + httpx, one TLS 1.3 connection each, presenting a real
device certificate from a real enrollment) each send one status report per period (30 s),
hold a desired-state long-poll (with its ETag) until their next report, and put a small sync
batch (Parquet, 20 records) every ``--batch-every`` reports. Enrollment runs once: identities
are cached in ``bench/.work/fleet`` with the cloud's data folder and PostgreSQL schema, so
reruns start at once.

Measured per step of the ramp (one replica on CPU 0, the client pinned to CPU 1): p50/p99 of
every non-waiting request (reports, batches, first desired state) after one warm-up period,
errors (any failure or unexpected status, a long-poll included), reports/s, the replica's
memory and CPU, and the client's CPU. ``devices_1_replica`` is the largest N of the ramp with
p99 < 250 ms and no error. Then the scale-out: a closed-loop report load (every agent reports
back to back) against one replica and against two, both behind nginx (replicas pinned to CPU 0
and CPU 1; nginx and the client share both): ``reports_per_s`` is one replica's and
``scale_2_replicas_ratio`` two over one. Client and servers share this machine's cores, so the
client's CPU is reported: where it is near a core the client, not the cloud, sets the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pyarrow as pa
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
from _common import percentile, show, write

from hybridai.demo.launcher import Child, Launcher, free_port
from hybridai.demo.replicas import nginx_binary, nginx_conf
from hybridai.edge.store.edge_store import PendingBatch
from hybridai.edge.sync.batches import encode_batch
from hybridai.link import pki
from hybridai.link.tls import client_context
from hybridai.protocol import sync
from hybridai.storage.metadata import create_engine_for

WORK = Path(__file__).parent / ".work" / "fleet"
POSTGRES = os.environ.get(
    "HYBRIDAI_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA = "hai_bench_fleet"
PERIOD_S = 30.0
P99_TARGET_MS = 250.0
MAX_WAIT_S = 25.0  # the long-poll's wait (the cloud allows 30)


# -- the cloud ------------------------------------------------------------------------------


def _database_url() -> str:
    url = make_url(POSTGRES).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    return url.render_as_string(hide_password=False)


def _cloud_env(recheck_s: float) -> dict[str, str]:
    return {
        "HYBRIDAI_CLOUD_DATABASE_URL": _database_url(),
        "HYBRIDAI_CLOUD_LAKE_URL": str(WORK / "lake"),
        "HYBRIDAI_CLOUD_BLOB_URL": str(WORK / "blobs"),
        "HYBRIDAI_CLOUD_DEVICE_CERT_LIFETIME_S": str(90 * 86400),
        "HYBRIDAI_CLOUD_HEARTBEAT_INTERVAL_S": str(PERIOD_S),
        "HYBRIDAI_CLOUD_LONG_POLL_RECHECK_S": str(recheck_s),
        "HYBRIDAI_CLOUD_TRUSTED_PROXIES": '["127.0.0.1"]',
        "HYBRIDAI_LOG_LEVEL": "WARNING",
    }


def _fresh_store() -> None:
    """Start over: the schema, the cloud's data folder and the cached identities."""
    engine = create_engine_for(POSTGRES)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
    engine.dispose()
    for path in (WORK / "cloud", WORK / "lake", WORK / "blobs", WORK / "devices"):
        shutil.rmtree(path, ignore_errors=True)
    (WORK / "identities.txt").unlink(missing_ok=True)


@dataclass
class Cloud:
    """Replicas (each pinned to a CPU) and, for more than one, nginx in front."""

    launcher: Launcher
    replicas: list[Child]
    url: str
    nginx: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return WORK / "cloud" / "pki" / "ca.crt"

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.replicas]

    def stop(self) -> None:
        self.launcher.stop_all()


def start_cloud(count: int, cpus: list[str], recheck_s: float) -> Cloud:
    """``count`` replicas, replica i pinned to ``cpus[i]``; the URL is the first one's."""
    launcher = Launcher(WORK)
    ca_file = WORK / "cloud" / "pki" / "ca.crt"
    replicas = []
    for i in range(count):
        port = free_port()
        args = ["cloud", "serve", "--data-dir", "cloud", "--port", str(port)]
        child = launcher.spawn(f"cloud-{i}", args, port, _cloud_env(recheck_s), ca_file=ca_file)
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cpus[i], str(child.process.pid)],
            check=True,
            capture_output=True,
        )
        launcher.wait_ready(child)
        replicas.append(child)
    return Cloud(launcher, replicas, replicas[0].url)


def behind_nginx(cloud: Cloud, replicas: list[Child]) -> Cloud:
    """The same replicas' ``replicas`` behind a new nginx (stop it with ``stop_nginx``)."""
    binary = nginx_binary()
    if binary is None:
        raise SystemExit("nginx is missing: apt-get install nginx (tests/system_packages.sh)")
    port = free_port()
    work = WORK / "nginx"
    work.mkdir(exist_ok=True)
    ports = [int(c.url.rsplit(":", 1)[1]) for c in replicas]
    (work / "nginx.conf").write_text(nginx_conf(port, ports, cloud.ca_file.parent, work))
    nginx = subprocess.Popen(
        [binary, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proxied = Cloud(cloud.launcher, replicas, f"https://127.0.0.1:{port}", nginx)
    verify = client_context(cloud.ca_file)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{proxied.url}/v2/health/live", verify=verify).is_success:
                return proxied
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("nginx did not come up in front of the replicas")


def stop_nginx(cloud: Cloud) -> None:
    if cloud.nginx is not None:
        cloud.nginx.terminate()
        cloud.nginx.wait(10)


# -- devices: enrolled once, cached ---------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    device_id: str
    cert: Path
    key: Path


def _identities() -> list[Identity]:
    listed = WORK / "identities.txt"
    if not listed.exists():
        return []
    folder = WORK / "devices"
    return [
        Identity(d, folder / f"{d}.crt", folder / f"{d}.key") for d in listed.read_text().split()
    ]


def _site(device_id: str) -> str:
    """50 sites of 200 devices each at 10,000 (a site's peers are in its desired state)."""
    return f"site-{int(device_id.rsplit('-', 1)[1]) % 50:02d}"


async def _enroll(cloud: Cloud, token: str, device_id: str, verify: Any) -> Identity:
    key = pki.new_key()
    async with httpx.AsyncClient(base_url=cloud.url, verify=verify, timeout=60) as http:
        made = await http.post(
            "/api/v1/enrollment-tokens",
            json={"site": _site(device_id), "device_id": device_id, "ttl_s": 600},
            headers={"Authorization": f"Bearer {token}"},
        )
        made.raise_for_status()
        body = {
            "token": made.json()["token"],
            "device_id": device_id,
            "kind": "sensor-gateway",
            "capabilities": {"cores": 1, "memory_mb": 512},
            "agent_version": "bench",
            "csr": pki.device_csr(key, device_id),
        }
        enrolled = await http.post("/api/v1/enroll", json=body)
        enrolled.raise_for_status()
    folder = WORK / "devices"
    identity = Identity(device_id, folder / f"{device_id}.crt", folder / f"{device_id}.key")
    identity.cert.write_text(enrolled.json()["certificate"])
    identity.key.write_bytes(pki.key_pem(key))
    return identity


def ensure_devices(count: int) -> list[Identity]:
    """``count`` enrolled identities, enrolling the missing ones through the API."""
    have = _identities()
    if len(have) >= count:
        return have[:count]
    if not have:
        _fresh_store()
    (WORK / "devices").mkdir(parents=True, exist_ok=True)
    cloud = start_cloud(1, ["0,1"], 0.5)
    try:
        token = (WORK / "cloud" / "admin.token").read_text().strip()
        verify = client_context(cloud.ca_file)
        missing = [f"sim-{i:05d}" for i in range(len(have), count)]
        started = time.perf_counter()

        async def enroll_all() -> list[Identity]:
            gate = asyncio.Semaphore(16)

            async def one(device_id: str) -> Identity:
                async with gate:
                    return await _enroll(cloud, token, device_id, verify)

            return list(await asyncio.gather(*(one(d) for d in missing)))

        made = asyncio.run(enroll_all())
        elapsed = time.perf_counter() - started
        print(f"enrolled {len(made)} devices in {elapsed:.0f} s ({len(made) / elapsed:.0f}/s)")
    finally:
        cloud.stop()
    with open(WORK / "identities.txt", "a") as out:
        out.write("".join(f"{i.device_id}\n" for i in made))
    return [*have, *made][:count]


# -- the simulated agents -------------------------------------------------------------------


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    reports: int = 0
    batches: int = 0
    polls: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    measuring: bool = False

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def _report(device_id: str, uptime_s: float) -> bytes:
    return json.dumps(
        {"device_id": device_id, "agent_version": "bench", "uptime_s": uptime_s}
    ).encode()


def _batch(device_id: str, seq: int) -> tuple[bytes, str]:
    now = time.time()
    table = pa.table(
        {
            "ts": pa.array([now - 20 + i for i in range(20)], pa.float64()),
            "vibration": pa.array([round(1.0 + 0.01 * i, 2) for i in range(20)], pa.float64()),
            "machine": pa.array([f"{device_id}-m0"] * 20),
        }
    )
    ids = np.arange(seq * 20, seq * 20 + 20, dtype=np.int64)
    encoded = encode_batch(PendingBatch(seq, "telemetry", table, ids), device_id, _site(device_id))
    return encoded.body, hashlib.sha256(encoded.body).hexdigest()


class Agent:
    def __init__(self, identity: Identity, cloud: Cloud, seq_base: int, index: int) -> None:
        self.id = identity.device_id
        verify = client_context(cloud.ca_file, identity.cert, identity.key)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.http = httpx.AsyncClient(
            base_url=cloud.url, verify=verify, limits=limits, timeout=MAX_WAIT_S + 15
        )
        self.seq = seq_base
        self.index = index
        self.etag: str | None = None

    async def _timed(self, stats: Stats, kind: str, method: str, path: str, **kw: Any) -> int:
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            stats.error(f"{kind}: {type(exc).__name__}")
            return 0
        if stats.measuring:
            stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        return self._status(stats, kind, response)

    def _status(self, stats: Stats, kind: str, response: httpx.Response) -> int:
        if response.status_code >= 400:
            stats.error(f"{kind}: HTTP {response.status_code}")
        elif kind == "desired" and response.status_code == 200:
            self.etag = response.headers.get("etag", "").strip('"')
        return response.status_code

    async def report(self, stats: Stats) -> None:
        status = await self._timed(
            stats,
            "report",
            "POST",
            f"/api/v1/devices/{self.id}/status",
            content=_report(self.id, time.monotonic()),
            headers={"Content-Type": "application/json"},
        )
        if status == 204 and stats.measuring:
            stats.reports += 1

    async def batch(self, stats: Stats) -> None:
        self.seq += 1
        body, digest = _batch(self.id, self.seq)
        headers = {
            "Content-Type": sync.PARQUET_MEDIA_TYPE,
            sync.SHA256_HEADER: digest,
            sync.STREAM_HEADER: "telemetry",
            sync.RECORDS_HEADER: "20",
        }
        path = f"/api/v1/devices/{self.id}/batches/{self.seq}"
        if await self._timed(stats, "batch", "PUT", path, content=body, headers=headers) == 200:
            stats.batches += 1 if stats.measuring else 0

    async def long_poll(self, stats: Stats, wait_s: float) -> None:
        headers = {"If-None-Match": f'"{self.etag}"'} if self.etag else {}
        path = f"/api/v1/devices/{self.id}/desired-state"
        try:
            response = await self.http.get(path, params={"wait": wait_s}, headers=headers)
        except httpx.HTTPError as exc:
            stats.error(f"long-poll: {type(exc).__name__}")
            return
        self._status(stats, "desired", response)
        stats.polls += 1 if stats.measuring else 0

    async def live(self, stats: Stats, until: float, batch_every: int, period_s: float) -> None:
        """Report every period, a batch every ``batch_every`` reports, long-poll in between."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, period_s))
        await self._timed(stats, "desired", "GET", f"/api/v1/devices/{self.id}/desired-state")
        cycle = self.index
        while loop.time() < until:
            due = loop.time() + period_s
            await self.report(stats)
            if cycle % batch_every == 0:
                await self.batch(stats)
            cycle += 1
            wait = min(MAX_WAIT_S, due - loop.time() - 1.0)
            if wait >= 1.0 and loop.time() + wait < until:
                await self.long_poll(stats, round(wait, 1))
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def hammer(self, stats: Stats, until: float) -> None:
        """Closed loop: reports back to back (the scale-out measurement)."""
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            await self.report(stats)


# -- one measured step ----------------------------------------------------------------------


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _rss_mb(pids: list[int]) -> float:
    return float(sum(psutil.Process(p).memory_info().rss for p in pids)) / 2**20


def _client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(
    cloud: Cloud,
    identities: list[Identity],
    warmup_s: float,
    measure_s: float,
    batch_every: int,
    closed_loop: bool,
) -> dict[str, Any]:
    seq_base = int(time.time() * 10) * 1000  # above any earlier run's sequence numbers
    agents = [Agent(ident, cloud, seq_base, i) for i, ident in enumerate(identities)]
    stats = Stats()
    loop = asyncio.get_running_loop()
    start = loop.time()
    until = start + warmup_s + measure_s
    if closed_loop:
        tasks = [asyncio.create_task(a.hammer(stats, until)) for a in agents]
    else:
        period = warmup_s  # one period of warm-up: every agent has connected and reported
        tasks = [asyncio.create_task(a.live(stats, until, batch_every, period)) for a in agents]
    await asyncio.sleep(warmup_s)
    stats.measuring = True
    cpu0, client0, t0 = _cpu_s(cloud.pids()), _client_cpu_s(), time.perf_counter()
    await asyncio.sleep(measure_s)
    stats.measuring = False
    elapsed = time.perf_counter() - t0
    cpu1, client1 = _cpu_s(cloud.pids()), _client_cpu_s()
    rss = _rss_mb(cloud.pids())
    await asyncio.wait(tasks, timeout=MAX_WAIT_S + 20)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(a.http.aclose() for a in agents), return_exceptions=True)
    # none answered in the window: p99 is at least the client's timeout (a lower bound)
    lat = stats.latencies_ms or [(MAX_WAIT_S + 15) * 1000]
    return {
        "devices": len(identities),
        "reports_per_s": stats.reports / elapsed,
        "batches_per_s": stats.batches / elapsed,
        "polls_per_s": stats.polls / elapsed,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "requests": len(stats.latencies_ms),
        "p99_is_lower_bound": not stats.latencies_ms,
        "errors": stats.errors,
        "error_kinds": stats.error_kinds,
        "cloud_cpu_cores": (cpu1 - cpu0) / elapsed,
        "client_cpu_cores": (client1 - client0) / elapsed,
        "cloud_rss_mb": rss,
    }


def step(
    cloud: Cloud,
    identities: list[Identity],
    *,
    warmup_s: float,
    measure_s: float,
    batch_every: int,
    closed_loop: bool = False,
) -> dict[str, Any]:
    result = asyncio.run(_run(cloud, identities, warmup_s, measure_s, batch_every, closed_loop))
    result["replicas"] = len(cloud.replicas)
    return result


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    parser.add_argument(
        "--devices", default="100,1000,3000,10000", help="the one-replica ramp (comma-separated)"
    )
    parser.add_argument("--batch-every", type=int, default=10, help="reports per sync batch")
    parser.add_argument(
        "--recheck-s", type=float, default=5.0, help="the cloud's long-poll recheck (setting)"
    )
    parser.add_argument("--fresh", action="store_true", help="enroll again from scratch")
    args = parser.parse_args()
    _raise_fd_limit()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        _fresh_store()
    ramp = [100] if args.quick else [int(n) for n in args.devices.split(",")]
    # quick: a report per 5 s from 100 agents (a smoke run); full: per 30 s, as specified
    warmup_s, measure_s = (5.0, 10.0) if args.quick else (PERIOD_S, PERIOD_S)
    identities = ensure_devices(max(ramp))
    hammer_n = 100 if args.quick else 300
    scale_s = 5.0 if args.quick else 15.0
    cloud = start_cloud(2, ["0", "1"], args.recheck_s)
    steps, scale = [], {}
    try:
        one = Cloud(cloud.launcher, cloud.replicas[:1], cloud.url)  # direct, no nginx
        idle_rss = _rss_mb(one.pids())
        os.sched_setaffinity(0, {1})  # the ramp: the client on CPU 1, the replica on CPU 0
        for n in ramp:
            result = step(
                one,
                identities[:n],
                warmup_s=warmup_s,
                measure_s=measure_s,
                batch_every=args.batch_every,
            )
            result["idle_rss_mb"] = idle_rss
            steps.append(result)
            print(json.dumps(result))
        os.sched_setaffinity(0, {0, 1})  # scale-out: replicas pinned, nginx and client share
        for count in (1, 2):
            proxied = behind_nginx(cloud, cloud.replicas[:count])
            try:
                scale[count] = step(
                    proxied,
                    identities[:hammer_n],
                    warmup_s=2.0,
                    measure_s=scale_s,
                    batch_every=args.batch_every,
                    closed_loop=True,
                )
            finally:
                stop_nginx(proxied)
            print(json.dumps(scale[count]))
    finally:
        cloud.stop()
    passing = [s["devices"] for s in steps if s["p99_ms"] < P99_TARGET_MS and s["errors"] == 0]
    at_10k = next((s for s in steps if s["devices"] == 10_000), None)
    biggest = steps[-1]
    metrics: dict[str, float] = {
        "devices_1_replica": float(max(passing, default=0)),
        "reports_per_s": scale[1]["reports_per_s"],
        "scale_2_replicas_ratio": scale[2]["reports_per_s"] / max(scale[1]["reports_per_s"], 1e-9),
        "cloud_mb_per_1k_devices": (biggest["cloud_rss_mb"] - biggest["idle_rss_mb"])
        / (biggest["devices"] / 1000),
    }
    if at_10k is not None:
        metrics["p99_ms_at_10k"] = at_10k["p99_ms"]
        metrics["errors_at_10k"] = float(at_10k["errors"])
    install = Path(__file__).parent / "results" / "install.json"
    edge_venv = "bench/results/install.json is missing: edge_venv_mb left out"
    if install.exists():
        found = json.loads(install.read_text()).get("metrics", {}).get("edge_venv_mb")
        if found is not None:
            metrics["edge_venv_mb"] = float(found)
            edge_venv = "edge_venv_mb copied from bench/results/install.json"
    show("fleet scale (one report per 30 s per device)", metrics)
    notes = {
        "ramp_1_replica": steps,
        "scale_out_closed_loop": {str(k): v for k, v in scale.items()},
        "period_s": warmup_s,
        "long_poll_recheck_s": args.recheck_s,
        "batch_every_reports": args.batch_every,
        "edge_venv": edge_venv,
        "cpus": os.cpu_count(),
        "pinning": "ramp: replica on CPU 0, client on CPU 1; scale-out: replicas on CPU 0 and "
        "1, nginx and the client unpinned (sharing both)",
    }
    print(write("fleet", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
