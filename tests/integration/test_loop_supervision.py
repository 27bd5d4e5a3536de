"""Background loops under the supervisor, with real faults: they back off, restart, recover.

The cloud's rollout ticker loses its table (a botched manual migration) on each metadata
backend, and the cloud's health shows the failures until the table is back; an edge process
finds its store locked by another writer (``database is locked``), and its sync loop restarts
and delivers everything once the lock is gone, its status saying what happened.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text
from typer.testing import CliRunner

from _fleet import local_fleet
from hybridai.cli import _api
from hybridai.cli.main import app as cli
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
    metadata_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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

        @contextlib.contextmanager
        def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[Any]:
            api.headers.clear()  # the CLI talks to this app (httpx transport swapped only)
            if token:
                api.headers["Authorization"] = f"Bearer {token}"
            yield api

        monkeypatch.setattr(_api, "client", in_process)
        monkeypatch.setenv("HYBRIDAI_TOKEN", admin["Authorization"].split()[1])
        monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))

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
        shown = CliRunner().invoke(cli, ["cloud", "health"], env={"COLUMNS": "200"})
        assert shown.exit_code == 1, shown.output  # a probe can alert on it
        assert "failing and retrying: rollout-ticker:" in " ".join(shown.output.split())
        api.headers.clear()
        assert api.get("/api/v1/health").status_code == 401  # not for strangers

        RolloutRow.__table__.create(cloud.engine)  # type: ignore[attr-defined]
        _until("a tick after the repair", lambda: ticker()["consecutive_failures"] == 0)
        healed = ticker()
        assert healed["last_success_at"] > broken["last_error_at"]
        assert healed["state"] in ("waiting", "running")
        calm = CliRunner().invoke(cli, ["cloud", "health", "--json"])
        assert calm.exit_code == 0, calm.output
        assert {loop["name"] for loop in json.loads(calm.output)["loops"]} == {
            "rollout-ticker",
            "retraining-ticker",
            "telemetry-compactor",
            "alert-evaluator",
            "alert-notifier",
            "remote-tiers",
        }
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
        shown = CliRunner().invoke(cli, ["edge", "status", "--url", url], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        loops_shown = shown.output.split("background loops", 1)[1]
        assert "sync" in loops_shown and "OperationalError: database is locked" in loops_shown
        log = fleet.edges["edge-a"].log
    told = log.read_text()  # the fleet is stopped: the agent shut its loops down
    assert told.count("loop sync failed: OperationalError: database is locked") == 1  # traceback
    assert "Task was destroyed" not in told and "never retrieved" not in told


def _publish(topic: str, payload: bytes) -> None:
    """One QoS 1 message, returned once the broker acknowledged it."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(*BROKER)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


BROKER = ("127.0.0.1", 1883)


@pytest.mark.slow
def test_an_mqtt_store_failure_is_retried_and_shows_as_the_mqtt_loop(tmp_path: Path) -> None:
    """MQTT runs on paho's thread; its store retries report to the supervisor like a loop."""
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError:
        pytest.skip("no MQTT broker at 127.0.0.1:1883")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {
        "HYBRIDAI_EDGE_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "HYBRIDAI_EDGE_MQTT_TOPICS": json.dumps({f"{prefix}/+/telemetry": "telemetry"}),
        "HYBRIDAI_EDGE_MQTT_CLIENT_ID": f"hybridai-{prefix}",
    }
    with local_fleet(tmp_path / "fleet") as fleet:
        fleet.start_edge("edge-m", "north", env=env)
        fleet.wait_enrolled(1)

        url = fleet.edges["edge-m"].url

        def status() -> dict[str, Any]:  # slow while a store write waits out the lock
            answer: dict[str, Any] = httpx.get(f"{url}/api/v1/status", timeout=30).json()
            return answer

        topic = f"{prefix}/m1/telemetry"
        n = 0

        def subscribed() -> bool:
            nonlocal n
            n += 1
            _publish(topic, json.dumps({"ts": float(n), "v": 1.0}).encode())
            time.sleep(0.2)
            return bool(status()["mqtt"]["records_stored"])

        wait_for("the agent to subscribe", subscribed, 30, every_s=0.1)
        stored = status()["mqtt"]["records_stored"]
        lock = sqlite3.connect(fleet.workspace / "edge-m" / "store.db", isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            _publish(topic, json.dumps({"ts": 1000.0, "v": 2.0}).encode())
            wait_for("a failed store", lambda: _loop(status(), "mqtt")["failures"] >= 1, 60)
            assert status()["mqtt"]["records_stored"] == stored
        finally:
            lock.execute("ROLLBACK")
            lock.close()

        wait_for("the record stored", lambda: status()["mqtt"]["records_stored"] > stored, 60)
        mqtt = _loop(status(), "mqtt")
        assert mqtt["restarts"] >= 1 and mqtt["consecutive_failures"] == 0
        assert mqtt["last_error"].endswith("OperationalError: database is locked")
        assert mqtt["last_success_at"] > mqtt["last_error_at"]
        log = fleet.edges["edge-m"].log
    assert log.read_text().count("loop mqtt failed:") == 1  # its traceback once, not per retry
