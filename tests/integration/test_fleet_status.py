"""``hybridai fleet status`` against a real cloud with enrolled edges at two sites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _fleet import local_fleet
from hybridai.cli.fleet_status import problems, summary
from hybridai.demo.fleet import LocalFleet, wait_for


def _env(fleet: LocalFleet) -> dict[str, str]:
    """A user's environment: the local cloud's DATA_DIR supplies its CA and admin token."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDAI_")}
    return clean | {
        "HYBRIDAI_CLOUD_DATA_DIR": str(fleet.workspace / "cloud"),
        "HYBRIDAI_CONFIG_DIR": str(fleet.workspace / ".config"),
        "COLUMNS": "200",
    }


def _status(fleet: LocalFleet, *args: str) -> subprocess.CompletedProcess[str]:
    assert fleet.cloud is not None
    return subprocess.run(
        [sys.executable, "-m", "hybridai", "fleet", "status", "--cloud", fleet.cloud.url, *args],
        env=_env(fleet),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _device(view: dict[str, Any], device: str) -> dict[str, Any]:
    rows = [d for s in view["sites"] for d in s["devices"] if d["device_id"] == device]
    assert len(rows) == 1, view
    return rows[0]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path_factory.mktemp("ws")) as started:
        started.start_edge("edge-a1", "plant-a")
        started.start_edge("edge-b1", "plant-b", kind="sensor-gateway")
        started.wait_enrolled(2)
        yield started


@pytest.mark.slow
def test_status_shows_sites_devices_and_their_reports_as_json(fleet: LocalFleet) -> None:
    done = _status(fleet, "--json")

    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert [s["site"] for s in view["sites"]] == ["plant-a", "plant-b"]
    assert view["devices"] == 2 and view["online"] == 2
    edge = _device(view, "edge-a1")
    assert edge["online"] is True and edge["problems"] == []
    assert edge["agent_version"] and edge["last_seen_s_ago"] < 30
    assert edge["backlog_records"] == 0
    assert edge["clock_skew_s"] is not None and abs(edge["clock_skew_s"]) < 5


@pytest.mark.slow
def test_status_table_then_a_silent_device_goes_offline(fleet: LocalFleet) -> None:
    shown = _status(fleet)
    assert shown.returncode == 0, shown.stderr
    assert "site plant-a: 1/1 online" in shown.stdout
    assert "edge-b1" in shown.stdout and "online" in shown.stdout

    fleet.kill("edge-b1")
    wait_for(
        "edge-b1 to be offline",
        lambda: (
            not _device(
                json.loads(_status(fleet, "--json", "--offline-after", "3s").stdout), "edge-b1"
            )["online"]
        ),
        60,
        every_s=1,
    )
    later = _status(fleet, "--offline-after", "3s")

    assert "site plant-b: 0/1 online" in later.stdout
    assert "offline" in later.stdout
    assert "site plant-a: 1/1 online" in later.stdout


@pytest.mark.slow
def test_watch_refreshes_until_stopped(fleet: LocalFleet) -> None:
    assert fleet.cloud is not None
    args = ["fleet", "status", "--cloud", fleet.cloud.url, "--watch", "--interval", "0.5"]
    stamps: list[float] = []
    with subprocess.Popen(
        [sys.executable, "-m", "hybridai", *args, "--json"],
        env=_env(fleet),
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        try:
            for line in child.stdout:
                if line.startswith('  "generated_at"'):
                    stamps.append(float(line.split(":")[1].strip().rstrip(",")))
                if len(stamps) == 2:
                    break
        finally:
            child.terminate()

    assert len(stamps) == 2 and stamps[1] > stamps[0]


def test_no_cloud_is_a_clear_error(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "hybridai", "fleet", "status", "--cloud", "https://127.0.0.1:9"],
        env=clean | {"HYBRIDAI_CONFIG_DIR": str(tmp_path), "HYBRIDAI_TOKEN": "t"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "cannot reach the cloud" in done.stderr


def test_health_names_what_is_wrong() -> None:
    report = {
        "models": [{"name": "pm", "version": "3", "state": "failed"}],
        "loops": [{"name": "sync", "state": "backing_off"}],
        "cloud_reachable": False,
        "clock_hold": "clock skew: ...",
        "mqtt": {"connected": False},
    }
    device = {"device_id": "e", "site": "s", "status": report, "quarantined_batches": 2}

    assert problems(device) == [
        "model pm v3 failed",
        "loop sync failing",
        "cloud unreachable",
        "clock skew",
        "mqtt down",
        "2 quarantined batches",
    ]
    assert problems({"revoked": True}) == ["revoked"]
    assert problems({"status": None}) == ["never reported"]


def test_summary_counts_open_alerts_per_device_when_the_cloud_has_them() -> None:
    now = time.time()
    devices = [
        {"device_id": "e1", "site": "s", "last_seen": now - 5, "status": None},
        {"device_id": "e2", "site": "s", "last_seen": now - 500, "status": None},
    ]
    alerts = [{"device_id": "e1", "state": "firing"}, {"device_id": "e1", "state": "resolved"}]

    with_alerts = summary(devices, alerts, now, 30)
    without = summary(devices, None, now, 30)

    rows = with_alerts["sites"][0]["devices"]
    assert [r["alerts"] for r in rows] == [1, 0]
    assert [r["online"] for r in rows] == [True, False]
    assert [r["alerts"] for r in without["sites"][0]["devices"]] == [None, None]
