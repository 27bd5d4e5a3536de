"""The dashboard's routes under ``/ui``: one page per question an operator asks.

Pages read the cloud's services directly (one query per page, paged and aggregated here);
actions call the API's own route functions, so RBAC, validation and auditing are the API's.
APIs that other parts of the cloud add later (alerts, self-healing) are read through the app
itself, so a page shows them as soon as the route exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import anyio
import httpx
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from hybridai import __version__
from hybridai.cloud.api import rollouts as rollouts_api
from hybridai.cloud.api import users as users_api
from hybridai.cloud.auth import Principal, cloud_of, require
from hybridai.cloud.devices import fleet
from hybridai.cloud.models import registry, rollout
from hybridai.cloud.people import users
from hybridai.dashboard import charts, session, views
from hybridai.governance import audit, rbac
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.people import LoginRequest, LoginResponse

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", include_in_schema=False)

# The pages' scripts and styles are this package's own files: nothing else may load.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _stale_s(request: Request) -> float:
    """A device is offline once it missed three heartbeats (as the site peers are)."""
    return max(3 * cloud_of(request).settings.heartbeat_interval_s, 10.0)


def _render(
    request: Request, name: str, who: Principal | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    page = templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "may_operate": who is not None and rbac.may(who.role, "operate"),
            "may_audit": who is not None and rbac.may(who.role, "audit"),
            "csrf": session.csrf_token(request),
            "version": __version__,
            **context,
        },
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    return page


def _page(action: str, build: Callable[[Request, Principal], HTMLResponse]) -> Any:
    """Run ``build`` for a signed-in person allowed ``action``; otherwise login or a 403 page."""

    def handler(request: Request) -> Response:
        try:
            who = session.signed_in(request)
            require(request, action)
            return build(request, who)
        except ApiError as exc:
            return _refused(request, exc)

    return handler


def _refused(request: Request, exc: ApiError) -> Response:
    if exc.status == 401:
        response = RedirectResponse("/ui/login", status_code=303)
        session.clear_session(response)
        return response
    who = getattr(request.state, "principal", None)
    return _render(
        request,
        "error.html",
        who,
        exc.status,
        status=exc.status,
        code=exc.code,
        message=exc.message,
    )


# --- login -------------------------------------------------------------------------------


@router.get("", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/ui/fleet", status_code=303)


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return _render(request, "login.html", None, message=None)


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1024)],
    code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Sign in through the API's own login (throttling, MFA, audit), then keep the token."""
    try:
        body = LoginRequest(username=username, password=password, code=code.strip() or None)
        answer = users_api.login(body, request)
    except ApiError as exc:
        return _render(request, "login.html", None, exc.status, message=exc.message)
    except ValueError:
        return _render(request, "login.html", None, 400, message="enter a user name and password")
    if answer.status_code != 200:  # throttled: the API's message says how long to wait
        message = bytes(answer.body).decode()
        return _render(request, "login.html", None, answer.status_code, message=message)
    granted = LoginResponse.model_validate_json(bytes(answer.body))
    if granted.scope != "full":
        return _render(request, "login.html", None, 403, message=granted.message)
    response = RedirectResponse("/ui/fleet", status_code=303)
    session.set_session(response, granted.access_token, granted.expires_at)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    try:
        who = session.signed_in(request)
        session.check_csrf(request, csrf)
    except ApiError as exc:
        return _refused(request, exc)
    if who.person is not None:
        with cloud_of(request).session() as db:
            users.logout(db, who.person)
    response = RedirectResponse("/ui/login", status_code=303)
    session.clear_session(response)
    return response


# --- fleet and devices -------------------------------------------------------------------


def _fleet(request: Request, who: Principal) -> HTMLResponse:
    query = request.query_params
    now = time.time()
    with cloud_of(request).session() as db:
        devices = views.briefs(db)
    page = int(query.get("page", "1")) if query.get("page", "1").isdigit() else 1
    view = views.fleet_view(
        devices, now, _stale_s(request), query.get("site", ""), query.get("q", "")[:80], page
    )
    chart = charts.bars(
        charts.buckets(view.seen, now, 3600, 30),
        "devices by last report, last hour (2 min per bar)",
        "1 h ago",
        "now",
    )
    return _render(
        request, "fleet.html", who, view=view, chart=chart, site=query.get("site", ""),
        q=query.get("q", "")[:80],
    )  # fmt: skip


def _device(request: Request, who: Principal) -> HTMLResponse:
    device_id = request.path_params["device_id"]
    now = time.time()
    with cloud_of(request).session() as db:
        device = fleet.get_device(db, device_id)
    line = views.line(views.Brief.of(device), now, _stale_s(request))
    span = SPANS.get(request.query_params.get("span", "hour"), SPANS["hour"])
    wanted = [("", "backlog_records", "sync backlog", "")] + [
        (m.name, metric, f"{m.name}: {title}", unit)
        for m in (device.status.models if device.status else [])
        for metric, title, unit in MODEL_CHARTS
    ]
    trends = [
        chart
        for model, metric, title, unit in wanted
        if (chart := _trend(request, device_id, model, metric, title, unit, span)) is not None
    ]
    raised = anyio.from_thread.run(_api_get, request, "/api/v1/alerts")
    mine = [a for a in raised or [] if (a.get("subject") or {}).get("device_id") == device_id]
    return _render(
        request, "device.html", who, device=device, line=line, trends=trends, span=span,
        alerts=mine[:MAX_ROWS], ago=lambda ts: views.ago(ts, now),
    )  # fmt: skip


# The device page's charts per model, from the cloud's telemetry series.
MODEL_CHARTS = (
    ("latency_p99_ms", "p99 latency", " ms"),
    ("escalation_rate", "escalation rate", ""),
    ("cloud_latency_ms", "cloud round trip", " ms"),
)
MAX_ROWS = 100  # alerts and conditions shown on a page (the count says how many more)


@dataclass(frozen=True)
class Span:
    """A chart's time span: ``bars`` bars over ``seconds``, read at ``step`` (0: raw points)."""

    name: str
    seconds: int
    bars: int
    step: int
    since: str
    label: str


# The last hour from raw points (the stored minute buckets lag the newest reports by up to a
# compaction interval); the last day from the minute buckets (raw points would be too many).
SPANS = {
    "hour": Span("hour", 3600, 60, 0, "1h", "1 h ago"),
    "day": Span("day", 86400, 24, 60, "24h", "24 h ago"),
}


def _trend(
    request: Request, device_id: str, model: str, metric: str, title: str, unit: str, span: Span
) -> Any:
    """One telemetry series as bars over ``span`` (each the mean of its points); None if empty."""
    query = {"device": device_id, "metric": metric, "model": model, "since": span.since}
    path = f"/api/v1/telemetry?{urlencode({**query, 'step': span.step})}"
    series = anyio.from_thread.run(_api_get, request, path)
    points = series.get("points") if isinstance(series, dict) else None
    if not points:
        return None
    now = time.time()
    width = span.seconds / span.bars
    sums, counts = [0.0] * span.bars, [0] * span.bars
    for point in points:
        slot = span.bars - 1 - int((now - float(point["ts"])) // width)
        if 0 <= slot < span.bars:
            sums[slot] += float(point["mean"])
            counts[slot] += 1
    values = [round(t / n, 3) if n else 0.0 for t, n in zip(sums, counts, strict=True)]
    return charts.bars(values, f"{title}, last {span.name}", span.label, "now", unit)


router.add_api_route("/fleet", _page("read", _fleet), methods=["GET"])
router.add_api_route("/devices/{device_id}", _page("read", _device), methods=["GET"])


# --- models ------------------------------------------------------------------------------


def _models(request: Request, who: Principal) -> HTMLResponse:
    with cloud_of(request).session() as db:
        models = registry.list_models(db)
        active = [r for r in rollout.list_rollouts(db, None) if r.status not in views.ENDED]
    return _render(request, "models.html", who, models=models, active=active)


def _model(request: Request, who: Principal) -> HTMLResponse:
    name = request.path_params["name"]
    with cloud_of(request).session() as db:
        summary = next((m for m in registry.list_models(db) if m.name == name), None)
        if summary is None:
            registry.get_version(db, name, "1")  # the registry's own 400/404 and message
            raise ApiError(404, views.NOT_FOUND, f"model '{name[:80]}' has no versions yet")
        versions = [registry.get_version(db, name, v) for v in reversed(summary.versions)]
        rollouts = rollout.list_rollouts(db, name)[-10:][::-1]
        devices = views.briefs(db)
    traffic = views.model_traffic(name, devices)
    share = charts.share(
        [("edge", traffic.edge), ("cloud", traffic.cloud)],
        "answers by placement (devices running it)",
    )
    return _render(
        request, "model.html", who, summary=summary, versions=versions, rollouts=rollouts,
        traffic=traffic, share=share,
    )  # fmt: skip


router.add_api_route("/models", _page("read", _models), methods=["GET"])
router.add_api_route("/models/{name}", _page("read", _model), methods=["GET"])

ROLLOUT_ACTIONS = {
    "pause": rollouts_api.pause_rollout,
    "resume": rollouts_api.resume_rollout,
    "abort": rollouts_api.abort_rollout,
    "advance": rollouts_api.advance_rollout,
}


@router.post("/rollouts/{rollout_id}/{action}")
def act_on_rollout(
    rollout_id: str, action: str, request: Request, csrf: Annotated[str, Form()] = ""
) -> Response:
    """Pause, resume, abort or advance a rollout: operators only (the API's check)."""
    try:
        session.signed_in(request)
        session.check_csrf(request, csrf)
        act = ROLLOUT_ACTIONS.get(action)
        if act is None:
            raise ApiError(404, views.NOT_FOUND, f"no rollout action '{action[:40]}'")
        done = act(rollout_id, request)
    except ApiError as exc:
        return _refused(request, exc)
    return RedirectResponse(f"/ui/models/{done.model}", status_code=303)


# --- data, alerts, audit -----------------------------------------------------------------


def _data(request: Request, who: Principal) -> HTMLResponse:
    cloud = cloud_of(request)
    with cloud.session() as db:
        devices = views.briefs(db)
    tables = views.lake_tables(cloud.lake)
    flow = views.data_flow(devices)
    chart = charts.bars(
        [s.ingested for s in flow.sites], "records ingested per site (since agents started)",
        "sites: " + ", ".join(s.site for s in flow.sites[:6]), "",
    )  # fmt: skip
    return _render(request, "data.html", who, tables=tables, flow=flow, chart=chart)


def _audit(request: Request, who: Principal) -> HTMLResponse:
    query = request.query_params
    now = time.time()
    actor = query.get("actor", "")[:200] or None
    with cloud_of(request).session() as db:
        entries = audit.list_entries(db, actor=actor, limit=200)
        recent = audit.list_entries(db, since=now - 3600, limit=10_000)
    chart = charts.bars(
        charts.buckets([e.ts for e in recent], now, 3600, 30),
        "audited actions, last hour (2 min per bar)", "1 h ago", "now",
    )  # fmt: skip
    return _render(
        request, "audit.html", who, entries=entries[::-1], chart=chart, actor=actor or "",
        when=lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)),
    )  # fmt: skip


router.add_api_route("/data", _page("read", _data), methods=["GET"])
router.add_api_route("/audit", _page("audit", _audit), methods=["GET"])


async def _api(request: Request, method: str, path: str) -> httpx.Response:
    """Call one of the cloud's API routes in-process, as the signed-in person."""
    token = session.token_of(request) or ""
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as client:
        return await client.request(method, path, headers={"Authorization": f"Bearer {token}"})


async def _api_get(request: Request, path: str) -> Any:
    """GET an API route's JSON; None where it is absent (404) or not for this role."""
    answer = await _api(request, "GET", path)
    if answer.status_code != 200:
        return None
    return answer.json()


@router.post("/alerts/{alert_id}/ack")
async def ack_alert(alert_id: str, request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """An operator saw the alert: the API records who and when (its state is unchanged)."""
    try:
        await run_in_threadpool(session.signed_in, request)
        session.check_csrf(request, csrf)
        require(request, "operate")
    except ApiError as exc:
        return _refused(request, exc)
    answer = await _api(request, "POST", f"/api/v1/alerts/{quote(alert_id, safe='')}/ack")
    if answer.status_code != 200:
        body = answer.json()
        code = next((c for c in ErrorCode if c == body.get("code")), ErrorCode.BAD_REQUEST)
        error = ApiError(answer.status_code, code, str(body.get("error", "")))
        return _refused(request, error)
    return RedirectResponse("/ui/alerts", status_code=303)


@router.post("/healing/{action_id}/revert")
async def revert_healing(
    action_id: str, request: Request, csrf: Annotated[str, Form()] = ""
) -> Response:
    """An operator undoes a self-healing action (the API lifts its orders and audits it)."""
    try:
        await run_in_threadpool(session.signed_in, request)
        session.check_csrf(request, csrf)
        require(request, "operate")
    except ApiError as exc:
        return _refused(request, exc)
    answer = await _api(request, "POST", f"/api/v1/healing/{quote(action_id, safe='')}/revert")
    if answer.status_code != 200:
        body = answer.json()
        code = next((c for c in ErrorCode if c == body.get("code")), ErrorCode.BAD_REQUEST)
        return _refused(request, ApiError(answer.status_code, code, str(body.get("error", ""))))
    return RedirectResponse("/ui/alerts", status_code=303)


@router.get("/alerts")
async def alerts(request: Request) -> Response:
    try:
        who = await run_in_threadpool(session.signed_in, request)
        require(request, "read")
    except ApiError as exc:
        return _refused(request, exc)
    now = time.time()

    def current() -> list[dict[str, Any]]:
        with cloud_of(request).session() as db:
            return views.conditions(views.briefs(db), now, _stale_s(request))

    found = await run_in_threadpool(current)
    raised = await _api_get(request, "/api/v1/alerts")
    healing = await _api_get(request, "/api/v1/healing")
    cloud_health = await _api_get(request, "/api/v1/health")
    return _render(
        request, "alerts.html", who, conditions=found[:MAX_ROWS], more=len(found) - MAX_ROWS,
        alerts=None if raised is None else raised[:MAX_ROWS],
        more_alerts=0 if raised is None else len(raised) - MAX_ROWS,
        healing=None if healing is None else healing[:MAX_ROWS], ago=lambda ts: views.ago(ts, now),
        loops=(cloud_health or {}).get("loops") or [],
    )  # fmt: skip
