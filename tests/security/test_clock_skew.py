"""An edge whose clock is two days off: real processes, the edge's time shifted by libfaketime.

Ahead, every record looks two days old and the certificate looks due: retention must not delete
restricted records (their only copy) and the agent must not renew every second. Behind, the
cloud's certificate looks not yet valid: the agent must say "clock skew" and how to fix it, not
retry in silence. The cloud runs on the true time and is the reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _fleet import ingest, local_fleet
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
TWO_DAYS_S = 2 * 86400.0
DATE_SLACK_S = 120.0  # Date headers have whole seconds; a busy machine adds round-trip time
CERT_LIFETIME_S = 3 * 86400  # renewal is due after two thirds: two days ahead looks due


def shifted(offset: str) -> dict[str, str]:
    """The environment that runs a process with its clock moved by ``offset`` (e.g. +2d)."""
    if not LIBFAKETIME.exists():
        missing = "libfaketime is missing: apt-get install faketime (make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # timeouts and backoff keep their real pace
    }


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    env = {"HYBRIDAI_CLOUD_DEVICE_CERT_LIFETIME_S": str(CERT_LIFETIME_S)}
    with local_fleet(tmp_path_factory.mktemp("skew"), cloud_env=env) as fleet:
        yield fleet


def status(fleet: LocalFleet, device: str) -> dict[str, Any]:
    return fleet.edge_status(device)


def log_of(fleet: LocalFleet, device: str) -> str:
    return " ".join(fleet.edges[device].log.read_text(errors="replace").split())


def renewals(fleet: LocalFleet, device: str) -> int:
    entries = fleet.call(
        "GET",
        "/api/v1/audit",
        params={"action": "POST /api/v1/devices/{device_id}/certificate", "limit": 100_000},
    )
    return sum(1 for e in entries if device in e["target"])


def cli(*args: str, cloud: LocalFleet | None = None) -> str:
    """``hybridai ARGS``'s output (as the admin of ``cloud`` when given)."""
    env = {**os.environ, "COLUMNS": "400"}
    if cloud is not None and cloud.cloud is not None:
        token = (cloud.workspace / "cloud" / "admin.token").read_text().strip()
        env |= {
            "HYBRIDAI_CLOUD_URL": cloud.cloud.url,
            "HYBRIDAI_TOKEN": token,
            "HYBRIDAI_CA_FILE": str(cloud.ca_file),
        }
    done = subprocess.run(
        [sys.executable, "-m", "hybridai", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_edge_two_days_ahead_keeps_restricted_records_and_does_not_churn_certificates(
    cloud: LocalFleet,
) -> None:
    cloud.call(
        "PUT",
        "/api/v1/policies/formulas",
        json={"classification": "restricted", "edge_retention_days": {"restricted": 1}},
    )
    env = {**shifted("+2d"), "HYBRIDAI_EDGE_RETENTION_INTERVAL_S": "1"}
    edge = cloud.start_edge("edge-ahead", "plant-1", env=env)
    wait_for("the policy", lambda: "formulas" in status(cloud, "edge-ahead")["policies"], 60)
    now = time.time()  # the true time: to the edge these records are two days old
    records = [{"ts": now - 60 + i, "formula": f"f{i}"} for i in range(5)]
    assert ingest(edge.url, "formulas", records).status_code == 200

    wait_for(
        "the cloud to see the skew",
        lambda: (
            (cloud.call("GET", "/api/v1/devices/edge-ahead")["status"] or {}).get("clock_skew_s")
            is not None
        ),
        60,
    )
    time.sleep(8)  # eight retention passes (1 s), eight renewal checks (renewal looked due)

    seen = status(cloud, "edge-ahead")
    store = seen["store"]
    assert store["local_only_records"] == 5 and store["records_expired"] == 0, store
    assert abs(seen["clock_skew_s"] - TWO_DAYS_S) < DATE_SLACK_S, seen["clock_skew_s"]
    assert "clock skew" in seen["clock_hold"] and "NTP" in seen["clock_hold"], seen
    assert renewals(cloud, "edge-ahead") == 0
    reported = cloud.call("GET", "/api/v1/devices/edge-ahead")["status"]
    assert abs(reported["clock_skew_s"] - TWO_DAYS_S) < DATE_SLACK_S  # the fleet view shows it
    metrics = httpx.get(f"{edge.url}/metrics", timeout=10).text
    gauge = [line for line in metrics.splitlines() if line.startswith("hybridai_edge_clock_skew")]
    assert gauge and abs(float(gauge[0].split()[-1]) - TWO_DAYS_S) < DATE_SLACK_S, gauge
    shown = cli("edge", "status", "--url", edge.url)
    assert "clock skew" in shown and "+1728" in shown, shown
    assert "+1728" in cli("fleet", "list", cloud=cloud)  # the operator's view of the fleet
    log = log_of(cloud, "edge-ahead")
    assert log.count("clock skew: this device's clock is 2.0 days ahead of the cloud's") == 1, log
    assert "renewed the device certificate" not in log


def test_an_edge_two_days_behind_says_clock_skew_and_how_to_fix_it(cloud: LocalFleet) -> None:
    token = cloud.call(
        "POST",
        "/api/v1/enrollment-tokens",
        json={"site": "plant-1", "device_id": "edge-behind", "ttl_s": 600},
    )["token"]
    # It cannot enroll, so it never gets its site's LAN keys: its API is open to read status
    env = {**shifted("-2d"), "HYBRIDAI_EDGE_ENROLL_TOKEN": token, "HYBRIDAI_EDGE_LAN_AUTH": "open"}
    cloud.start_edge("edge-behind", "plant-1", env=env, enroll=False)

    wait_for(
        "the agent to name the cause",
        lambda: "clock skew" in (status(cloud, "edge-behind")["last_error"] or ""),
        90,
    )
    time.sleep(8)  # several more attempts (backoff from 0.5 s up to 10 s)

    seen = status(cloud, "edge-behind")
    assert seen["enrollment"] == "enrolling"
    assert "2.0 days behind the cloud's" in seen["last_error"], seen["last_error"]
    assert "NTP" in seen["last_error"]
    assert abs(seen["clock_skew_s"] + TWO_DAYS_S) < DATE_SLACK_S, seen["clock_skew_s"]
    assert seen["clock_hold"] and "clock skew" in seen["clock_hold"]
    log = log_of(cloud, "edge-behind")
    assert log.count("clock skew: this device's clock is 2.0 days behind the cloud's") == 1, log
    assert "not yet valid" not in log and "expired" not in log, log
