"""Faults on a real fleet: edges killed mid-sync, a cut uplink, a cloud killed and restarted.

Whatever happens, a record an edge acknowledged ends up in the lake exactly once, and an edge
that cannot reach the cloud keeps answering inference from its own copy of the model.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _fleet import (
    DATASETS,
    MODEL,
    PATIENT_EDGE,
    Feeder,
    assert_lake_exactly,
    assert_probabilities,
    infer,
    lake_totals,
    local_fleet,
    upload_and_deploy,
)
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow

# Small batches sent back to back: the edges are nearly always mid-sync, so a kill at a
# random moment often lands between the cloud's commit and the edge's record of the ack.
SYNC_OFTEN_S = "0.1"
SMALL_BATCHES = {
    "HYBRIDAI_EDGE_BATCH_MAX_RECORDS": "200",
    "HYBRIDAI_EDGE_SYNC_INTERVAL_S": SYNC_OFTEN_S,
}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet", {"HYBRIDAI_CLOUD_SYNC_INTERVAL_S": SYNC_OFTEN_S}) as f:
        yield f


def _acked(*feeders: Feeder) -> dict[str, int]:
    return {d: sum(f.acked[d] for f in feeders) for d in DATASETS}


def test_kill_edge_mid_sync_no_loss_no_duplicates(fleet: LocalFleet) -> None:
    device, site = "edge-k", "site-k"
    fleet.start_edge(device, site, env=SMALL_BATCHES)
    fleet.wait_enrolled(1)
    feeder = Feeder(fleet.edges[device].url, device, machines=8, seed=5)
    rng = random.Random(20240607)
    backlog_at_kill: list[int] = []

    for _ in range(6):
        # Each chunk is acknowledged (200) before the kill, so the edge owes us all of it.
        for _ in range(4):
            feeder.feed(ticks=rng.randint(60, 100))
        time.sleep(rng.uniform(0.0, 0.6))
        backlog_at_kill.append(fleet.edge_status(device)["store"]["backlog_records"])
        fleet.kill(device)
        fleet.start_edge(device, site)  # same port, same data dir, no new enrollment

    # The test did what it says: at least one kill hit an edge with records still to send.
    assert any(backlog > 0 for backlog in backlog_at_kill), backlog_at_kill
    fleet.wait_drained()
    assert_lake_exactly(fleet, feeder.acked)
    store = fleet.edge_status(device)["store"]
    assert store["records_ingested"] == store["records_synced"] == feeder.total
    assert len(fleet.call("GET", "/api/v1/devices")) == 1  # restarts did not re-enroll


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
