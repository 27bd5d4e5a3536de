"""Background loops under the supervisor, with real faults: they back off, restart, recover.

The cloud's rollout ticker loses its table (a botched manual migration) on each metadata
backend, and the cloud's health shows the failures until the table is back; an edge process
finds its store locked by another writer (``database is locked``), and its sync loop restarts
and delivers everything once the lock is gone, its status saying what happened.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from _fleet import local_fleet
from hybridai.cloud.app import create_app
from hybridai.cloud.context import open_cloud
from hybridai.cloud.settings import CloudSettings
from hybridai.demo.fleet import wait_for
from hybridai.storage.tables import RolloutRow


def _loop(health: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(loop for loop in health["loops"] if loop["name"] == name)
    return found


def _until(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_failing_rollout_tick_backs_off_restarts_and_shows_in_the_cloud_health(
    metadata_url: str, tmp_path: Path
) -> None:
    settings = CloudSettings(
        data_dir=tmp_path / "cloud",
        database_url=metadata_url,
        rollout_tick_s=0.05,
        retraining_tick_s=3600,
    )
    cloud = open_cloud(settings)
    admin = {"Authorization": f"Bearer {settings.admin_token_path.read_text().strip()}"}
    with TestClient(create_app(cloud)) as api:

        def ticker() -> dict[str, Any]:
            answer = api.get("/api/v1/health", headers=admin)
            assert answer.status_code == 200, answer.text
            return _loop(answer.json(), "rollout-ticker")

        _until("a first tick", lambda: ticker()["last_success_at"] is not None)
        cascade = " CASCADE" if cloud.engine.dialect.name == "postgresql" else ""
        with cloud.engine.begin() as connection:
            connection.execute(text(f"DROP TABLE rollouts{cascade}"))

        _until("three failed ticks", lambda: ticker()["failures"] >= 3)
        broken = ticker()
        assert broken["restarts"] >= 2 and broken["consecutive_failures"] >= 3
        assert broken["last_error"].startswith(("OperationalError", "ProgrammingError"))
        assert "rollouts" in broken["last_error"]
        assert api.get("/api/v1/health").status_code == 401  # not for strangers

        RolloutRow.__table__.create(cloud.engine)  # type: ignore[attr-defined]
        _until("a tick after the repair", lambda: ticker()["consecutive_failures"] == 0)
        healed = ticker()
        assert healed["last_success_at"] > broken["last_error_at"]
        assert healed["state"] in ("waiting", "running")
        assert _loop(api.get("/api/v1/health", headers=admin).json(), "retraining-ticker")[
            "state"
        ] in ("waiting", "running")
    cloud.close()


@pytest.mark.slow
def test_an_edge_whose_store_is_locked_restarts_its_sync_loop_and_delivers_afterwards(
    tmp_path: Path,
) -> None:
    env = {"HYBRIDAI_EDGE_SYNC_INTERVAL_S": "3"}
    with local_fleet(tmp_path / "fleet") as fleet:
        fleet.start_edge("edge-a", "north", env=env)
        fleet.wait_enrolled(1)
        url = fleet.edges["edge-a"].url

        def status() -> dict[str, Any]:
            answer: dict[str, Any] = httpx.get(f"{url}/api/v1/status", timeout=30).json()
            return answer

        wait_for(
            "the sync loop's first run", lambda: _loop(status(), "sync")["last_success_at"], 60
        )
        lock = sqlite3.connect(fleet.workspace / "edge-a" / "store.db", isolation_level=None)
        try:
            for _ in range(20):  # pending records at the moment the store gets locked
                rows = [{"ts": time.time(), "temp": 20.0 + i} for i in range(5)]
                posted = httpx.post(
                    f"{url}/api/v1/streams/telemetry/records", json={"records": rows}, timeout=30
                )
                assert posted.status_code == 200, posted.text
                lock.execute("BEGIN EXCLUSIVE")
                if status()["store"]["backlog_records"] > 0:
                    break
                lock.execute("ROLLBACK")
            else:
                raise AssertionError("the edge synced every record before the lock, 20 times")

            wait_for("a failed sync", lambda: _loop(status(), "sync")["failures"] >= 1, 90)
        finally:
            lock.execute("ROLLBACK")
            lock.close()

        wait_for("the backlog delivered", lambda: status()["store"]["backlog_records"] == 0, 90)
        sync = _loop(status(), "sync")
        assert sync["restarts"] >= 1 and sync["consecutive_failures"] == 0
        assert "OperationalError: database is locked" in sync["last_error"]
        assert sync["last_success_at"] > sync["last_error_at"]
        said = fleet.edge_status("edge-a")
        assert {loop["name"] for loop in said["loops"]} >= {"sync", "heartbeat", "retention"}
        log = fleet.edges["edge-a"].log
    told = log.read_text()  # the fleet is stopped: the agent shut its loops down
    assert told.count("loop sync failed: OperationalError: database is locked") == 1  # traceback
    assert "Task was destroyed" not in told and "never retrieved" not in told
