"""The demo's sensor side: each edge's machines stream readings and ask for predictions.

Producers behave as real ones should: a batch is resent until the edge acknowledges it (the
edge's content-hash de-duplication makes the resend harmless), so every reading produced is
either acknowledged or still being retried — which is what makes "lost = 0" checkable.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from hybridai.demo.simulator import FEATURES, Plant


@dataclass
class Tally:
    """What the producers saw; read by the launcher thread, written by the traffic thread."""

    records_acked: int = 0
    json_bytes: int = 0
    ingest_retries: int = 0
    placements: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    degraded: int = 0
    infer_errors: Counter[str] = field(default_factory=Counter)


class Traffic:
    """Runs in its own thread with its own event loop until ``stop``."""

    def __init__(
        self,
        edges: dict[str, str],
        seed: int,
        machines_per_edge: int = 8,
        interval_s: float = 0.25,
        ticks_per_interval: int = 5,
        cloud_hint_share: float = 0.1,
    ) -> None:
        self.edges = edges
        self.tally = Tally()
        self.infer_enabled = threading.Event()
        self._stop = threading.Event()
        self._interval = interval_s
        self._ticks = ticks_per_interval
        self._cloud_share = cloud_hint_share
        self._machines = machines_per_edge
        start = time.time() - 30 * 86400  # a month of plant history, compressed into minutes
        self._plants = {
            device: Plant(
                [f"{device}-m{i:02d}" for i in range(machines_per_edge)],
                seed=seed * 1000 + n,
                start_ts=start,
            )
            for n, device in enumerate(sorted(edges))
        }
        self._rng = random.Random(seed)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    async def _main(self) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            await asyncio.gather(*(self._edge(http, d, url) for d, url in self.edges.items()))

    async def _ingest(
        self, http: httpx.AsyncClient, url: str, stream: str, records: list[dict[str, Any]]
    ) -> None:
        """Send until acknowledged; only then do the records count as produced."""
        body = json.dumps({"records": records}, separators=(",", ":"))
        while True:
            try:
                response = await http.post(
                    f"{url}/api/v1/streams/{stream}/records",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            self.tally.ingest_retries += 1
            await asyncio.sleep(0.2)
        self.tally.records_acked += len(records)
        self.tally.json_bytes += len(json.dumps(records, separators=(",", ":")))

    async def _infer(self, http: httpx.AsyncClient, url: str, rows: list[dict[str, Any]]) -> None:
        parameters: dict[str, Any] = {"data_class": "internal"}
        if self._rng.random() < self._cloud_share:
            parameters["placement"] = "cloud"
        request = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [len(rows), len(FEATURES)],
                    "datatype": "FP32",
                    "data": [[r[f] for f in FEATURES] for r in rows],
                }
            ],
            "parameters": parameters,
        }
        started = time.perf_counter()
        try:
            response = await http.post(f"{url}/v2/models/pm/infer", json=request)
        except httpx.HTTPError as exc:
            self.tally.infer_errors[type(exc).__name__] += 1
            return
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            self.tally.infer_errors[str(response.json().get("code", response.status_code))] += 1
            return
        params = response.json().get("parameters") or {}
        placement = str(params.get("placement", "?"))
        self.tally.placements[placement] += 1
        self.tally.reasons[str(params.get("reason", "?"))] += 1
        self.tally.latency_ms[placement].append(elapsed)
        if params.get("degraded"):
            self.tally.degraded += 1

    async def _edge(self, http: httpx.AsyncClient, device: str, url: str) -> None:
        plant = self._plants[device]
        while not self._stop.is_set():
            tick_started = time.monotonic()
            telemetry: list[dict[str, Any]] = []
            failures: list[dict[str, Any]] = []
            for _ in range(self._ticks):
                t, f = plant.step()
                telemetry += t
                failures += f
            await self._ingest(http, url, "telemetry", telemetry)
            if failures:
                await self._ingest(http, url, "failures", failures)
            if self.infer_enabled.is_set():
                await self._infer(http, url, telemetry[-self._machines :])
            pause = self._interval - (time.monotonic() - tick_started)
            if pause > 0:
                await asyncio.sleep(pause)
