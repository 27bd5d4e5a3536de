"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real cloud.

A cloud process runs over loopback TLS with a small seeded fleet (devices enrolled through the
API, status reports posted for them, a model with two versions and a rollout). A viewer and an
operator (with MFA) sign in through the login page; every page is visited, its content checked
and a screenshot saved under tests/e2e/artifacts/. Every request the browser makes is routed
through a check that fails any request to a host other than the cloud's: no CDN.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from _fleet import local_fleet
from _totp import code_at
from hybridai.demo.fleet import LocalFleet
from hybridai.link import pki

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"
CPU = ["CPUExecutionProvider"]


def _chromium() -> str:
    """Debian's Chromium, installed here when missing (Playwright's own download fails)."""
    found = shutil.which("chromium")
    if found is None:
        quiet = {"stdout": subprocess.DEVNULL, "check": True}
        subprocess.run(["apt-get", "update", "-qq"], **quiet)  # type: ignore[call-overload]
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            **quiet,
        )  # type: ignore[call-overload]
        found = shutil.which("chromium")
    assert found is not None, "chromium is not installed and apt-get could not install it"
    return found


@dataclass
class Site:
    fleet: LocalFleet
    url: str
    operator_secret: str
    rollout_id: str
    foreign: list[str] = field(default_factory=list)  # requests to any other host


def _enroll(fleet: LocalFleet, device: str, site: str) -> None:
    token = fleet.call(
        "POST", "/api/v1/enrollment-tokens", json={"site": site, "device_id": device}
    )["token"]
    fleet.call(
        "POST",
        "/api/v1/enroll",
        json={
            "token": token,
            "device_id": device,
            "kind": "edge-server",
            "capabilities": {"cores": 4, "memory_mb": 2048, "execution_providers": CPU},
            "agent_version": "0.1.0",
            "csr": pki.device_csr(pki.new_key(), device),
        },
    )


def _report(fleet: LocalFleet, device: str, **report: Any) -> None:
    body = {"device_id": device, "agent_version": "0.1.0", "uptime_s": 60, **report}
    fleet.call("POST", f"/api/v1/devices/{device}/status", json=body)


def _seed(fleet: LocalFleet, onnx: bytes) -> tuple[str, str]:
    """Two sites, three devices (one never reports), model pm v1 deployed, v2 rolling out."""
    fleet.call(
        "POST", "/api/v1/users", json={"name": "vera", "role": "viewer", "password": PASSWORD}
    )
    fleet.call(
        "POST", "/api/v1/users", json={"name": "otto", "role": "operator", "password": PASSWORD}
    )
    assert fleet.api is not None
    first = fleet.api.post(
        "/api/v1/auth/login", json={"username": "otto", "password": PASSWORD}
    ).json()
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    secret = fleet.api.post("/api/v1/users/otto/mfa", headers=bearer).json()["secret"]
    confirmed = fleet.api.post(
        "/api/v1/users/otto/mfa/confirm",
        json={"code": code_at(secret, time.time() - 30)},
        headers=bearer,
    )
    assert confirmed.status_code == 200, confirmed.text
    for device, site in (("press-01", "north"), ("press-02", "north"), ("mill-01", "south")):
        _enroll(fleet, device, site)
    for _ in range(2):
        fleet.call(
            "POST", "/api/v1/models/pm/versions", files={"edge": ("e.onnx", onnx), "cloud": ("c.onnx", onnx)}
        )  # fmt: skip
    fleet.call("PUT", "/api/v1/deployments/pm", json={"name": "pm", "version": "1"})
    model = {"name": "pm", "version": "1", "variant": "edge", "state": "ready"}
    _report(
        fleet,
        "press-01",
        models=[model],
        model_health=[{"name": "pm", "version": "1", "requests": 200, "escalations": 30, "p99_ms": 4.5}],
        inference={"requests_edge": 170, "requests_cloud": 30},
        store={"backlog_records": 1234, "records_ingested": 5000, "records_synced": 3766},
        clock_skew_s=0.4,
        estimates={"edge_ms": 3.2, "cloud_ms": 41.0},
    )  # fmt: skip
    failed = {**model, "state": "failed", "error": "the model file could not be loaded"}
    for _ in range(3):  # the cloud's alert needs 2 of its 3 latest reports to agree
        _report(fleet, "mill-01", models=[failed], store={"records_ingested": 800})
    rollout = fleet.call(
        "POST",
        "/api/v1/rollouts",
        json={"model": "pm", "version": "2", "soak_s": 3600, "traffic_timeout_s": 3600},
    )
    return secret, str(rollout["rollout_id"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, classifier_onnx: bytes) -> Iterator[Site]:
    # A slow rollout tick: the test's own clicks are what moves the rollout.
    with local_fleet(
        tmp_path_factory.mktemp("dash"), {"HYBRIDAI_CLOUD_ROLLOUT_TICK_S": "3600"}
    ) as fleet:
        secret, rollout_id = _seed(fleet, classifier_onnx)
        assert fleet.cloud is not None
        yield Site(fleet, fleet.cloud.url, secret, rollout_id)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A fresh browser context (no cookies) that refuses every request off the cloud's host."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1366, "height": 900})
    host = urlsplit(site.url).netloc

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).netloc == host:
            route.continue_()
        else:
            site.foreign.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    opened = context.new_page()
    yield opened
    context.close()
    assert not site.foreign, f"requests left the cloud: {site.foreign}"


def _login(page: Page, site: Site, user: str, code: str | None = None) -> None:
    page.goto(f"{site.url}/ui/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    if code is not None:
        page.fill("#code", code)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/fleet")


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_without_a_session_every_page_sends_to_the_login(page: Page, site: Site) -> None:
    for path in ("/ui/fleet", "/ui/devices/press-01", "/ui/models/pm", "/ui/audit"):
        page.goto(f"{site.url}{path}")
        assert urlsplit(page.url).path == "/ui/login", path
    _shot(page, "login")


def test_a_wrong_password_is_refused_with_a_message(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/ui/login")
    page.fill("#username", "vera")
    page.fill("#password", "not the password at all")
    page.click("button[type=submit]")
    assert "wrong username or password" in page.inner_text("[role=alert]")
    assert page.context.cookies() == []


def test_the_session_cookie_is_httponly_secure_and_strict(page: Page, site: Site) -> None:
    _login(page, site, "vera")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read the token


def test_a_viewer_sees_every_page_and_no_action(page: Page, site: Site) -> None:
    _login(page, site, "vera")
    fleet = page.inner_text("main")
    for expected in ("press-01", "press-02", "mill-01", "north", "south", "pm v1", "offline"):
        assert expected in fleet, expected
    assert "model failed: pm" in fleet and "+0.4 s" in fleet and "1234" in fleet
    _shot(page, "fleet")

    page.click("text=press-01")
    page.wait_for_url("**/ui/devices/press-01")
    device = page.inner_text("main")
    for expected in ("pm", "v1", "ready", "edge_ms", "170 / 30", "north", "Last hour"):
        assert expected in device, expected
    assert page.locator("svg[aria-label='pm: p99 latency, last hour'] rect").count() == 60
    _shot(page, "device")
    page.click("text=show the last day")
    page.wait_for_url("**/ui/devices/press-01?span=day")
    assert "Last day" in page.inner_text("main") and "show the last hour" in page.inner_text("main")

    page.goto(f"{site.url}/ui/models")
    assert "v1 production" in page.inner_text("main") or "v1" in page.inner_text("main")
    _shot(page, "models")

    page.goto(f"{site.url}/ui/models/pm")
    model = page.inner_text("main")
    for expected in ("v1 → v2", "v2", "15.0%", "edge 85%", "cloud 15%"):
        assert expected in model, expected
    assert page.locator("button:has-text('Abort')").count() == 0  # a viewer does not act
    _shot(page, "model")

    page.goto(f"{site.url}/ui/data")
    data = page.inner_text("main")
    assert "5800" in data and "north" in data and "south" in data
    _shot(page, "data")

    page.goto(f"{site.url}/ui/alerts")
    alerts = page.inner_text("main")
    assert "mill-01" in alerts and "model failed: pm" in alerts  # the reports' conditions
    # The cloud's own alert (its evaluator runs every few seconds) shows up live.
    page.get_by_text("failed models on mill-01").wait_for(timeout=90_000)
    assert "critical" in page.inner_text("main")
    assert page.locator("button:has-text('Acknowledge')").count() == 0  # a viewer does not act
    # Self-healing acted on it: the edge reloads the model, the cloud answers meanwhile
    healing = page.locator("tr", has_text="cloud-while-unhealthy")
    healing.wait_for(timeout=30_000)
    assert "route_to_cloud" in healing.inner_text() and "mill-01" in healing.inner_text()
    assert "restart_model" in page.inner_text("main")
    assert page.locator("button:has-text('Revert')").count() == 0
    assert "rollout-ticker" in page.inner_text("main")  # the cloud's own loops
    _shot(page, "alerts")

    answer = page.goto(f"{site.url}/ui/audit")  # the audit log is for admins and operators
    assert answer is not None and answer.status == 403
    assert "may not audit" in page.inner_text("main")
    assert page.locator("nav >> text=Audit").count() == 0

    # Acting is refused even with a valid form token: RBAC is the API's.
    csrf = page.get_attribute("input[name=csrf]", "value")
    refused = page.request.post(
        f"{site.url}/ui/rollouts/{site.rollout_id}/abort", form={"csrf": csrf or ""}
    )
    assert refused.status == 403 and "may not operate" in refused.text()
    refused = page.request.post(f"{site.url}/ui/alerts/any/ack", form={"csrf": csrf or ""})
    assert refused.status == 403 and "may not operate" in refused.text()
    refused = page.request.post(f"{site.url}/ui/healing/any/revert", form={"csrf": csrf or ""})
    assert refused.status == 403 and "may not operate" in refused.text()


def test_an_operator_with_mfa_acts_and_the_audit_log_shows_it(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/ui/login")
    page.fill("#username", "otto")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")  # no code: MFA is required for operators
    assert "code" in page.inner_text("[role=alert]").lower()

    _login(page, site, "otto", code_at(site.operator_secret, time.time()))
    # A forged post (no form token) changes nothing.
    forged = page.request.post(f"{site.url}/ui/rollouts/{site.rollout_id}/pause", form={})
    assert forged.status == 403 and "CSRF" in forged.text()

    page.goto(f"{site.url}/ui/models/pm")
    page.click("button:has-text('Pause')")
    page.wait_for_url("**/ui/models/pm")
    assert "paused" in page.inner_text("main")
    assert page.locator("button:has-text('Resume')").count() == 1
    _shot(page, "model-operator")

    page.goto(f"{site.url}/ui/alerts")
    failed = page.locator("tr", has_text="failed models on mill-01")
    failed.wait_for(timeout=90_000)
    failed.locator("button:has-text('Acknowledge')").click()
    page.wait_for_url("**/ui/alerts")
    assert "otto" in page.locator("tr", has_text="failed models on mill-01").inner_text()
    # An operator reverts the cloud route: its orders are lifted, and it says by whom
    route = page.locator("tr", has_text="cloud-while-unhealthy")
    route.locator("button:has-text('Revert')").click()
    page.wait_for_url("**/ui/alerts")
    assert "reverted by otto" in page.locator("tr", has_text="cloud-while-unhealthy").inner_text()
    _shot(page, "alerts-operator")

    page.goto(f"{site.url}/ui/audit")
    audit = page.inner_text("main")
    assert "POST /ui/rollouts/{rollout_id}/{action}" in audit
    assert f"rollout_id={site.rollout_id},action=pause" in audit and "otto\toperator" in audit
    _shot(page, "audit")

    page.click("text=Sign out")
    page.wait_for_url("**/ui/login")
    page.goto(f"{site.url}/ui/fleet")
    assert urlsplit(page.url).path == "/ui/login"


def test_api_docs_load_with_no_request_off_the_cloud(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
    assert "hybridai cloud" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("[data-path='/api/v1/devices']", timeout=60_000)  # operations listed
    _shot(page, "docs")
    page.goto(f"{site.url}/redoc")
    page.wait_for_selector("text=hybridai cloud", timeout=60_000)
    _shot(page, "redoc")


def test_the_fleet_page_updates_live_without_a_reload(page: Page, site: Site) -> None:
    """A device that reports turns online on an open page (its live parts poll the cloud)."""
    _login(page, site, "vera")
    row = page.locator("tr", has=page.locator("a", has_text="press-02"))
    assert "offline" in row.inner_text()
    page.evaluate("window.notReloaded = true")
    _report(site.fleet, "press-02", models=[{"name": "pm", "version": "1", "variant": "edge", "state": "ready"}])  # fmt: skip
    row.filter(has_text="online").wait_for(timeout=60_000)
    assert page.evaluate("window.notReloaded") is True  # the same page, updated in place
    assert "updated" in page.inner_text("#updated")
