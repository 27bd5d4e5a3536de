"""How long the dashboard's fleet page takes in a real browser with 1,000 devices.

A real cloud process (loopback TLS, SQLite) with ``DEVICES`` devices enrolled and reporting
through the API; Debian's Chromium, driven by Playwright, signs in as a viewer and loads the
fleet page ``ROUNDS`` times. The figure is the browser's own navigation timing (request start
to the load event), median of the rounds. No baseline: the target is absolute (500 ms).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from hybridai.demo.fleet import LocalFleet
from hybridai.link import pki

PASSWORD = "correct horse battery staple"


def _seed(fleet: LocalFleet, devices: int) -> None:
    key = pki.new_key()  # one key for all: the CSR's signature is what is checked, not reuse
    model = {"name": "pm", "version": "1", "variant": "edge", "state": "ready"}
    for i in range(devices):
        device, site = f"dev-{i:04d}", f"site-{i % 20:02d}"
        token = fleet.call(
            "POST", "/api/v1/enrollment-tokens", json={"site": site, "device_id": device}
        )["token"]
        fleet.call(
            "POST",
            "/api/v1/enroll",
            json={
                "token": token, "device_id": device, "kind": "edge-server",
                "capabilities": {"cores": 4, "memory_mb": 2048}, "agent_version": "0.1.0",
                "csr": pki.device_csr(key, device),
            },
        )  # fmt: skip
        fleet.call(
            "POST",
            f"/api/v1/devices/{device}/status",
            json={"device_id": device, "agent_version": "0.1.0", "uptime_s": 60,
                  "models": [model], "store": {"backlog_records": i % 50}},
        )  # fmt: skip


def dashboard_part(quick: bool) -> tuple[dict[str, float], dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        return {}, {"skipped": "Debian's chromium is not installed (make test installs it)"}
    devices, rounds = (1000, 3) if quick else (1000, 7)
    with tempfile.TemporaryDirectory() as tmp:
        fleet = LocalFleet(Path(tmp), {"HYBRIDAI_CLOUD_HEARTBEAT_INTERVAL_S": "3600"})
        try:
            fleet.start_cloud()
            assert fleet.cloud is not None
            fleet.call(
                "POST", "/api/v1/users",
                json={"name": "vera", "role": "viewer", "password": PASSWORD},
            )  # fmt: skip
            _seed(fleet, devices)
            url = fleet.cloud.url
            timings: list[float] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = browser.new_context(ignore_https_errors=True).new_page()
                page.goto(f"{url}/ui/login")
                page.fill("#username", "vera")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url("**/ui/fleet")
                for _ in range(rounds):
                    page.goto(f"{url}/ui/fleet", wait_until="load")
                    timing = page.evaluate(
                        "(() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return n.loadEventEnd - n.startTime; })()"
                    )
                    timings.append(float(timing))
                rows = page.locator("tr").count()
                browser.close()
        finally:
            fleet.close()
    metrics = {"dashboard_load_ms": round(statistics.median(timings), 1)}
    notes = {"devices": devices, "rounds": rounds, "rows_on_page": rows,
             "load_ms_each": [round(t, 1) for t in timings]}  # fmt: skip
    return metrics, notes
