"""Alert webhooks against a real local HTTP server: retried with backoff, never blocking."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests._telemetry import FakeEdge

from hybridai.cloud.app import create_app
from hybridai.cloud.context import open_cloud
from hybridai.cloud.operations.notify import Notifier
from hybridai.cloud.settings import CloudSettings
from hybridai.link import pki
from hybridai.link.retry import Backoff
from hybridai.protocol.alerts import Alert, AlertSubject

FAST = Backoff(base_s=0.05, max_s=0.2)


class Hook:
    """A webhook receiver that answers 503 to its first ``failures`` calls, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.calls += 1
                status = 503 if hook.calls <= hook.failures else 200
                if status == 200:
                    hook.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook(failures=2)
    yield server
    server.close()


def _alert() -> Alert:
    return Alert(
        alert_id="a1",
        kind="clock_skew",
        severity="warning",
        state="firing",
        subject=AlertSubject(device_id="gw-1"),
        summary="clock skew (s) on gw-1 is beyond its limit 30",
        started_at=1.0,
        last_seen_at=1.0,
        detector="threshold",
    )


async def _drain(notifier: Notifier, until: float) -> None:
    await notifier.step()
    while notifier._tasks and time.monotonic() < until:
        await asyncio.sleep(0.05)


def test_a_webhook_that_fails_twice_gets_the_alert_on_the_third_try(hook: Hook) -> None:
    notifier = Notifier([hook.url], backoff=FAST)
    notifier.submit([(_alert(), "fired"), (_alert(), "merged")])  # a merge is not announced
    asyncio.run(_drain(notifier, time.monotonic() + 30))
    assert hook.calls == 3 and notifier.delivered == 1 and notifier.failed == 0
    assert hook.bodies == [{"event": "fired", "alert": _alert().model_dump(mode="json")}]


def test_a_dead_webhook_never_blocks_and_gives_up(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Notifier(["http://127.0.0.1:9/nothing-listens", hook.url], backoff=FAST, attempts=3)

    async def run() -> float:
        dead.submit([(_alert(), "fired")])
        started = time.monotonic()
        await dead.step()  # starts the deliveries, waits for none
        took = time.monotonic() - started
        while dead._tasks:
            await asyncio.sleep(0.05)
        return took

    assert asyncio.run(run()) < 0.5
    assert dead.failed == 1 and dead.delivered == 1  # the live one still got it
    assert "gave up after 3 attempts" in caplog.text and "secret-token" not in caplog.text


def test_the_cloud_posts_a_reported_fault_to_its_webhook(hook: Hook, tmp_path: Path) -> None:
    settings = CloudSettings(
        data_dir=tmp_path / "cloud",
        rollout_tick_s=3600,
        retraining_tick_s=3600,
        alert_eval_s=3600,
        telemetry_compact_s=3600,
        alert_webhooks=[hook.url],
    )
    cloud = open_cloud(settings)
    admin = settings.admin_token_path.read_text().strip()
    try:
        headers = {"Authorization": f"Bearer {admin}"}
        with TestClient(create_app(cloud), headers=headers) as api:
            token = api.post("/api/v1/enrollment-tokens", json={"site": "s", "device_id": "gw-1"})
            body = {
                "token": token.json()["token"],
                "device_id": "gw-1",
                "kind": "edge-server",
                "capabilities": {"cores": 2, "memory_mb": 1024},
                "agent_version": "t",
                "csr": pki.device_csr(pki.new_key(), "gw-1"),
            }
            assert api.post("/api/v1/enroll", json=body).status_code == 200
            edge = FakeEdge("gw-1", seed=1, faults={"disk"})
            for _ in range(2):
                report = json.loads(edge.report().model_dump_json())
                assert api.post("/api/v1/devices/gw-1/status", json=report).status_code == 204
            deadline = time.monotonic() + 60
            while not hook.bodies and time.monotonic() < deadline:
                time.sleep(0.1)
            loops = api.get("/api/v1/health").json()
    finally:
        cloud.close()
    assert [(b["event"], b["alert"]["kind"]) for b in hook.bodies] == [("fired", "disk_quota")]
    assert hook.calls >= 3  # two refusals, retried
    assert "alert-evaluator" in json.dumps(loops) and "telemetry-compactor" in json.dumps(loops)
