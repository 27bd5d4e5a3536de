"""A real edge through an outage with a full disk: alerts first, evictions in order, reported.

The edge's uplink is cut; alerts and far more telemetry than its disk quota holds arrive while
it is down. The quota evicts synced telemetry first, then unsynced telemetry, never alerts;
every eviction shows in the edge's status and in the cloud's fleet view. When the link
returns, the backlog drains with the alerts committed to the lake before any telemetry.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from _fleet import ingest, local_fleet
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow
DEVICE, SITE = "edge-q", "site-q"
QUOTA = 60_000
EDGE_ENV = {
    "HYBRIDAI_EDGE_STORE_QUOTA_BYTES": str(QUOTA),
    "HYBRIDAI_EDGE_BATCH_MAX_RECORDS": "50",
    "HYBRIDAI_EDGE_BATCH_MAX_WAIT_S": "0",
}
T0 = time.time()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet", {"HYBRIDAI_CLOUD_SYNC_INTERVAL_S": "0.2"}) as f:
        yield f


def _noise(i: int) -> str:
    """About 200 bytes that compression cannot shrink, so the quota fills as planned."""
    return base64.b64encode(random.Random(i).randbytes(200)).decode()


def telemetry(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"ts": T0 + i, "machine": f"m{i % 4}", "temperature": 20 + i % 7, "note": _noise(i)}
        for i in range(start, start + n)
    ]


def commits(fleet: LocalFleet, stream: str) -> list[tuple[int, int]]:
    """``(version, commit timestamp ms)`` of the stream's lake table."""
    table = DeltaTable(str(fleet.workspace / "cloud" / "lake" / stream))
    return sorted((h["version"], h["timestamp"]) for h in table.history())


def test_outage_with_full_disk_drains_alerts_first_and_reports_evictions(
    fleet: LocalFleet,
) -> None:
    fleet.start_edge(DEVICE, SITE, env=EDGE_ENV)
    fleet.wait_enrolled(1)
    edge = fleet.edges[DEVICE].url
    assert ingest(edge, "telemetry", telemetry(0, 100)).status_code == 200
    fleet.wait_drained()
    before = {v for v, _ in commits(fleet, "telemetry")}

    # Outage: alerts and 4x the quota of telemetry arrive, every batch acknowledged.
    fleet.links[DEVICE].cut()
    alerts = [{"ts": T0 + 1000 + i, "machine": "m1", "code": "overheat"} for i in range(20)]
    for n in range(8):
        assert ingest(edge, "telemetry", telemetry(100 + 100 * n, 100)).status_code == 200
        if n == 4:
            assert ingest(edge, "alerts", alerts).status_code == 200
    store = fleet.edge_status(DEVICE)["store"]
    tele, sent_alerts = store["streams"]["telemetry"], store["streams"]["alerts"]

    assert tele["records_evicted_synced"] == 100  # synced copies went first, all of them
    assert tele["records_evicted_unsynced"] > 0  # then unsynced low-priority data
    assert sent_alerts["records_evicted_unsynced"] == 0 and sent_alerts["backlog_records"] == 20
    assert store["bytes_stored"] <= QUOTA
    assert store["records_evicted_unsynced"] == tele["records_evicted_unsynced"]
    lost = tele["records_evicted_unsynced"]

    # Restore: the backlog drains, alerts first.
    fleet.links[DEVICE].restore()
    fleet.wait_drained()

    alert_commits = commits(fleet, "alerts")
    tele_after = [ts for v, ts in commits(fleet, "telemetry") if v not in before]
    assert tele_after, "the outage's telemetry reached the lake"
    # A telemetry batch cut before the alerts arrived (and refused by the cut link) is resent
    # first: batches reach the lake in the order they were cut. Nothing else precedes them.
    before_alerts = [ts for ts in tele_after if ts < max(ts for _, ts in alert_commits)]
    assert len(before_alerts) <= 1, (alert_commits, tele_after)
    assert len(tele_after) > 2
    assert fleet.lake_count("SELECT count(*) FROM alerts") == 20
    assert fleet.lake_count("SELECT count(*) FROM telemetry") == 900 - lost

    # The cloud's fleet view shows the same counts from the edge's last report.
    def reported() -> bool:
        devices = fleet.call("GET", "/api/v1/devices")
        streams = (devices[0].get("status") or {}).get("store", {}).get("streams", {})
        t = streams.get("telemetry", {})
        return t.get("records_evicted_unsynced") == lost and t.get("backlog_records") == 0

    wait_for("the fleet view to report the evictions", reported, 30)
