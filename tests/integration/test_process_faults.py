"""Faults on a real fleet: edges killed mid-ingest and mid-sync, a cut uplink, a cloud killed
and restarted.

Whatever happens, a record an edge acknowledged ends up in the lake exactly once, and an edge
that cannot reach the cloud keeps answering inference from its own copy of the model.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from _fleet import (
    MODEL,
    PATIENT_EDGE,
    STREAMS,
    Feeder,
    assert_lake_exactly,
    assert_probabilities,
    infer,
    ingest,
    lake_totals,
    local_fleet,
    upload_and_deploy,
)
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import Plant

pytestmark = pytest.mark.slow

# Small batches sent back to back: the edges are nearly always mid-sync, so a kill at a
# random moment often lands between the cloud's commit and the edge's record of the ack.
SYNC_OFTEN_S = "0.1"
SMALL_BATCHES = {
    "HYBRIDAI_EDGE_BATCH_MAX_RECORDS": "200",
    "HYBRIDAI_EDGE_SYNC_INTERVAL_S": SYNC_OFTEN_S,
}

# Kill -9 trials: each has its own seed, its own plant (machine ids carry the seed, so every
# record in the lake says which trial sent it) and kills the edge at a random moment, either
# while a producer streams requests into it (ingest) or while it drains its backlog (sync).
KILL_TRIALS = 20
FIRST_SEED = 1000
START_TS = time.time() - 30 * 86400
Key = tuple[str, float]  # (machine_id, ts): unique per plant reading


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet", {"HYBRIDAI_CLOUD_SYNC_INTERVAL_S": SYNC_OFTEN_S}) as f:
        yield f


def _acked(*feeders: Feeder) -> dict[str, int]:
    return {d: sum(f.acked[d] for f in feeders) for d in STREAMS}


@dataclass
class Chunk:
    """One ingest request's records; ``acked`` once the edge answered it 200."""

    seed: int
    stream: str
    records: list[dict[str, Any]]
    acked: bool = False

    def record_keys(self) -> set[Key]:
        return {(r["machine_id"], r["ts"]) for r in self.records}


@dataclass
class Trial:
    seed: int
    mode: str  # "ingest": killed mid-request; "sync": killed while draining its backlog
    resend: bool  # whether the producer resends a request the kill left unanswered
    kill_after_s: float = 0.0
    chunks: list[Chunk] = field(default_factory=list)
    cut: Chunk | None = None  # the request the kill interrupted (never acknowledged)
    cut_mid_request: bool = False  # the connection was open when the edge died
    retried: bool = False
    stored_before_kill: bool = False  # the retry found the cut chunk already stored
    backlog_at_kill: int = 0

    def __str__(self) -> str:
        return f"trial seed={self.seed} ({self.mode}, kill after {self.kill_after_s:.2f}s)"


class TrialProducer:
    """A producer that sends one trial's plant readings, one stream per request."""

    def __init__(self, edge_url: str, trial: Trial, machines: int = 8) -> None:
        self.edge_url = edge_url
        self.trial = trial
        self.plant = Plant(
            [f"k{trial.seed}-m{i:02d}" for i in range(machines)],
            seed=trial.seed,
            start_ts=START_TS,
        )

    def step(self, ticks: int) -> list[Chunk]:
        produced: dict[str, list[dict[str, Any]]] = {d: [] for d in STREAMS}
        for _ in range(ticks):
            telemetry, failures = self.plant.step()
            produced["telemetry"] += telemetry
            produced["failures"] += failures
        return [Chunk(self.trial.seed, s, r) for s, r in produced.items() if r]

    def send(self, chunk: Chunk, http: httpx.Client | None = None) -> dict[str, Any]:
        """POST the chunk (raises httpx.TransportError if the edge dies); 200 acknowledges it."""
        if not any(c is chunk for c in self.trial.chunks):
            self.trial.chunks.append(chunk)
        if http is None:
            response = ingest(self.edge_url, chunk.stream, chunk.records)
        else:
            path = f"/api/v1/streams/{chunk.stream}/records"
            response = http.post(path, json={"records": chunk.records})
        assert response.status_code == 200, f"{self.trial}: {response.text}"
        body: dict[str, Any] = response.json()
        chunk.acked = True
        return body

    def feed(self, ticks: int) -> None:
        for chunk in self.step(ticks):
            body = self.send(chunk)
            assert body["duplicates"] == 0, f"{self.trial}: distinct readings deduplicated: {body}"

    def stream_until_cut(self, rng: random.Random, failed: list[BaseException]) -> None:
        """Send back to back until a request fails; that one is the trial's cut chunk.

        The readings are made ahead and the connection kept alive, so that the producer is
        nearly always inside a request when the kill comes.
        """
        try:
            with httpx.Client(base_url=self.edge_url, timeout=30) as http:
                while True:
                    ready = [c for _ in range(20) for c in self.step(rng.randint(5, 30))]
                    for chunk in ready:
                        try:
                            self.send(chunk, http)
                        except httpx.TransportError as exc:
                            self.trial.cut = chunk
                            self.trial.cut_mid_request = not isinstance(exc, httpx.ConnectError)
                            return
        except BaseException as exc:  # handed to the test's thread
            failed.append(exc)


def _run_kill_trial(fleet: LocalFleet, device: str, site: str, trial: Trial) -> None:
    rng = random.Random(trial.seed)
    trial.kill_after_s = rng.uniform(0.05, 0.6) if trial.mode == "ingest" else rng.uniform(0, 0.4)
    producer = TrialProducer(fleet.edges[device].url, trial)
    if trial.mode == "ingest":
        failed: list[BaseException] = []
        thread = threading.Thread(
            target=producer.stream_until_cut, args=(random.Random(-trial.seed), failed)
        )
        thread.start()
        time.sleep(trial.kill_after_s)
        fleet.kill(device)
        thread.join(30)
        if failed:
            raise failed[0]
        assert trial.cut is not None, f"{trial}: the producer was not cut off by the kill"
    else:
        for _ in range(rng.randint(1, 3)):
            producer.feed(ticks=rng.randint(30, 80))
        time.sleep(trial.kill_after_s)
        trial.backlog_at_kill = fleet.edge_status(device)["store"]["backlog_records"]
        fleet.kill(device)
    fleet.start_edge(device, site)  # same port, same data dir, no new enrollment
    # A producer that did not hear back either resends the request (the edge must take it
    # for a duplicate if it had stored it) or gives up on it (then it is in the lake at most
    # once). Either way a batch is stored all or nothing.
    if trial.cut is not None and trial.resend:
        cut, n = trial.cut, len(trial.cut.records)
        body = producer.send(cut)
        assert (body["accepted"], body["duplicates"]) in {(n, 0), (0, n)}, (
            f"{trial}: the resent request was {body}, not all new or all duplicates "
            f"({n} records): the killed edge kept part of a batch"
        )
        trial.retried, trial.stored_before_kill = True, body["duplicates"] == n


def _lake_keys(fleet: LocalFleet, stream: str) -> Counter[Key]:
    result = fleet.call(
        "POST",
        "/api/v1/lake/query",
        json={"sql": f"SELECT machine_id, ts FROM {stream}", "limit": 1_000_000},
    )
    assert not result["truncated"]
    return Counter((machine, ts) for machine, ts in result["rows"])


def _lake_problems(lake: dict[str, Counter[Key]], trials: list[Trial]) -> list[str]:
    """Per trial: acknowledged records missing, records stored twice, half-stored requests."""
    problems: list[str] = []
    sent = {(c.stream, k) for t in trials for c in t.chunks for k in c.record_keys()}
    strangers = [(d, k) for d in STREAMS for k in lake[d] if (d, k) not in sent]
    if strangers:
        problems.append(f"{len(strangers)} lake rows no producer sent, e.g. {strangers[:3]}")
    for trial in trials:
        missing = twice = 0
        for chunk in trial.chunks:
            counts = [lake[chunk.stream][k] for k in chunk.record_keys()]
            twice += sum(1 for n in counts if n > 1)
            if chunk.acked:
                missing += counts.count(0)
            elif 0 < counts.count(0) < len(counts):
                problems.append(
                    f"{trial}: {counts.count(0)} of {len(counts)} records of the cut "
                    f"{chunk.stream} request are in the lake: a batch must be all or nothing"
                )
        if missing or twice:
            problems.append(
                f"{trial}: {missing} acknowledged records missing from the lake, "
                f"{twice} stored more than once"
            )
    return problems


def test_kill_edge_mid_ingest_and_mid_sync_no_loss_no_duplicates(fleet: LocalFleet) -> None:
    """Kill -9 the edge KILL_TRIALS times at seeded random moments, half of them mid-request
    (ingest), half while it drains its backlog (sync); every acknowledged record is then in
    the lake exactly once, and an unacknowledged one at most once."""
    device, site = "edge-k", "site-k"
    fleet.start_edge(device, site, env=SMALL_BATCHES)
    fleet.wait_enrolled(1)
    trials: list[Trial] = []
    for n, seed in enumerate(range(FIRST_SEED, FIRST_SEED + KILL_TRIALS)):
        # ingest+resend, sync, ingest+give up, sync, ...
        trial = Trial(seed, "ingest" if n % 2 == 0 else "sync", resend=n % 4 == 0)
        trials.append(trial)
        try:
            _run_kill_trial(fleet, device, site, trial)
        except Exception as exc:
            exc.add_note(f"during {trial}")
            raise

    fleet.wait_drained()
    streams = {c.stream for t in trials for c in t.chunks if c.acked}
    lake = {d: _lake_keys(fleet, d) if d in streams else Counter[Key]() for d in STREAMS}
    problems = _lake_problems(lake, trials)
    assert not problems, "\n".join(problems)
    store = fleet.edge_status(device)["store"]
    in_lake = sum(counts.total() for counts in lake.values())
    assert store["records_synced"] == store["records_ingested"] == in_lake
    assert len(fleet.call("GET", "/api/v1/devices")) == 1  # restarts did not re-enroll
    # The trials did what they say: kills landed mid-request and with a backlog to send.
    ingest_trials = [t for t in trials if t.mode == "ingest"]
    summary = "\n".join(
        f"{t}: backlog {t.backlog_at_kill}"
        if t.mode == "sync"
        else f"{t}: {'mid-request' if t.cut_mid_request else 'between requests'}, "
        f"{'resent' if t.retried else 'given up'}, stored before the kill: {t.stored_before_kill}"
        for t in trials
    )
    print(summary)  # shown with -s, or with a failure
    assert any(t.cut_mid_request for t in ingest_trials), summary
    assert any(t.backlog_at_kill > 0 for t in trials if t.mode == "sync"), summary


def test_cloud_outage_edge_keeps_serving_and_drains(
    fleet: LocalFleet, classifier_onnx: bytes
) -> None:
    # Prepare: an edge that serves a model and has synced everything so far.
    device = "edge-o"
    fleet.start_edge(device, "site-o", env=PATIENT_EDGE)
    fleet.wait_enrolled(1)
    upload_and_deploy(fleet, classifier_onnx)
    wait_for("the edge to serve the model", lambda: fleet.serving(MODEL, "1"), 60)
    edge = fleet.edges[device].url
    feeder = Feeder(edge, device, machines=4, seed=9)
    feeder.feed(ticks=50)
    fleet.wait_drained()
    before = lake_totals(fleet)
    assert_lake_exactly(fleet, feeder.acked)
    synced_before = feeder.total

    # Execute: cut the uplink, keep asking and keep ingesting.
    fleet.links[device].cut()
    params = assert_probabilities(infer(edge))
    assert params["placement"] == "edge"
    params = assert_probabilities(infer(edge, {"placement": "cloud"}))
    assert (params["placement"], params["degraded"]) == ("edge", True)
    for _ in range(5):
        feeder.feed(ticks=20)
    outage_records = feeder.total - synced_before

    def offline() -> bool:
        feeder.feed(ticks=1)  # the sensors do not stop for the outage
        return fleet.edge_status(device)["cloud_reachable"] is False

    wait_for("the edge to notice the cloud is unreachable", offline, 30)
    outage_records = feeder.total - synced_before
    status = fleet.edge_status(device)
    assert status["store"]["backlog_records"] == outage_records
    assert status["store"]["records_synced"] == synced_before
    assert status["inference"]["degraded"] >= 1
    params = assert_probabilities(infer(edge, {"placement": "cloud"}))
    assert (params["placement"], params["degraded"]) == ("edge", True)
    assert lake_totals(fleet) == before, "records crossed a cut link"

    # Restore: the backlog drains and the lake has everything, once.
    assert fleet.cloud is not None  # warm the cloud's copy of the model for the last request
    assert fleet.api is not None
    assert fleet.api.get(f"/v2/models/{MODEL}/ready", timeout=60).status_code == 200
    fleet.links[device].restore()
    fleet.wait_drained()
    assert_lake_exactly(fleet, feeder.acked)
    wait_for(
        "the edge to reach the cloud again",
        lambda: fleet.edge_status(device)["cloud_reachable"] is True,
        30,
    )
    params = assert_probabilities(infer(edge, {"placement": "cloud"}))
    assert (params["placement"], params["degraded"]) == ("cloud", False)


def test_cloud_killed_and_restarted(fleet: LocalFleet) -> None:
    edges = (("edge-c1", "site-c"), ("edge-c2", "site-d"))
    for device, site in edges:
        fleet.start_edge(device, site, env=SMALL_BATCHES)
    fleet.wait_enrolled(2)
    feeders = [
        Feeder(fleet.edges[device].url, device, machines=8, seed=30 + n)
        for n, (device, _) in enumerate(edges)
    ]

    # Execute, twice: kill -9 the cloud while both edges are mid-sync, keep ingesting while it
    # is down, bring it back on the same port and data.
    for _ in range(2):
        for _ in range(3):
            for feeder in feeders:
                feeder.feed(ticks=80)
        fleet.kill("cloud")
        backlogs = [fleet.edge_status(d)["store"]["backlog_records"] for d, _ in edges]
        assert any(backlogs), "the edges had synced everything before the kill"
        for feeder in feeders:
            feeder.feed(ticks=40)
        fleet.start_cloud()
        for feeder in feeders:
            feeder.feed(ticks=40)

    # Assert: everything acknowledged arrives, exactly once, and both edges are still known.
    fleet.wait_drained()
    assert_lake_exactly(fleet, _acked(*feeders))
    devices = {d["device_id"]: d["site"] for d in fleet.call("GET", "/api/v1/devices")}
    assert devices == dict(edges)
    for feeder, (device, _) in zip(feeders, edges, strict=True):
        assert fleet.edge_status(device)["store"]["records_synced"] == feeder.total
