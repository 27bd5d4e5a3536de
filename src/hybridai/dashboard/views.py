"""What each page shows, computed from the registry's records: plain data for the templates.

Aggregation and paging happen here, on the server, so a page of a 1,000-device fleet sends a
summary and one page of rows, not the whole fleet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.protocol.errors import ErrorCode
from hybridai.protocol.fleet import Device
from hybridai.storage.tables import DeviceRow

PAGE_SIZE = 50
ENDED = ("succeeded", "aborted")  # rollouts no longer in progress
NOT_FOUND = ErrorCode.NOT_FOUND


def ago(ts: float | None, now: float) -> str:
    """'12 s ago', '3 min ago', '2 h ago', 'never'."""
    if ts is None:
        return "never"
    age = max(0.0, now - ts)
    if age < 90:
        return f"{age:.0f} s ago"
    if age < 5400:
        return f"{age / 60:.0f} min ago"
    if age < 172800:
        return f"{age / 3600:.0f} h ago"
    return f"{age / 86400:.0f} d ago"


@dataclass(frozen=True)
class Brief:
    """A device as the pages need it: its row, the latest report left as stored (JSON).

    Validating a thousand full reports into models costs more than a page may take; the pages
    read the few fields they show straight from the stored report.
    """

    device_id: str
    site: str
    kind: str
    last_seen: float | None
    revoked: bool
    status: dict[str, Any] | None

    @classmethod
    def of(cls, device: Device) -> Brief:
        status = device.status.model_dump(mode="json") if device.status else None
        return cls(
            device.device_id, device.site, device.kind, device.last_seen, device.revoked, status
        )

    def store(self, key: str) -> Any:
        return ((self.status or {}).get("store") or {}).get(key) or 0

    @property
    def models(self) -> list[dict[str, Any]]:
        return list((self.status or {}).get("models") or [])


def briefs(session: Session) -> list[Brief]:
    """Every device, one query, no per-device validation."""
    rows = session.execute(
        select(
            DeviceRow.device_id,
            DeviceRow.site,
            DeviceRow.kind,
            DeviceRow.last_seen,
            DeviceRow.revoked,
            DeviceRow.status,
        ).order_by(DeviceRow.site, DeviceRow.device_id)
    )
    return [Brief(*row) for row in rows]


def online(device: Brief, now: float, stale_s: float) -> bool:
    return not device.revoked and device.last_seen is not None and now - device.last_seen <= stale_s


def health(device: Brief) -> str:
    """'ok', or the first problem an operator should look at."""
    status = device.status
    if device.revoked:
        return "revoked"
    if status is None:
        return "no report yet"
    failed = [m.get("name", "?") for m in device.models if m.get("state") == "failed"]
    if failed:
        return f"model failed: {', '.join(failed)}"
    if any(loop.get("state") == "backing_off" for loop in status.get("loops") or []):
        return "loop failing"
    if status.get("cloud_reachable") is False:
        return "cloud unreachable"
    if device.store("over_quota"):
        return "over quota"
    if status.get("clock_hold"):
        return "clock skew"
    return "ok"


@dataclass
class DeviceLine:
    device_id: str
    site: str
    kind: str
    online: bool
    last_seen: str
    agent_version: str
    models: str
    health: str
    backlog: int
    clock_skew: str


def line(device: Brief, now: float, stale_s: float) -> DeviceLine:
    status = device.status or {}
    skew = status.get("clock_skew_s")
    models = ", ".join(f"{m.get('name')} v{m.get('version')}" for m in device.models)
    return DeviceLine(
        device_id=device.device_id,
        site=device.site,
        kind=device.kind,
        online=online(device, now, stale_s),
        last_seen=ago(device.last_seen, now),
        agent_version=str(status.get("agent_version") or "—"),
        models=models or "—",
        health=health(device),
        backlog=int(device.store("backlog_records")),
        clock_skew="—" if skew is None else f"{skew:+.1f} s",
    )


@dataclass
class FleetView:
    total: int
    online: int
    unhealthy: int
    backlog: int
    sites: list[tuple[str, int, int]]  # site, devices, online
    versions: list[tuple[str, int]]  # "model vN", devices running it
    rows: list[DeviceLine]
    page: int
    pages: int
    seen: list[float] = field(default_factory=list)  # last_seen times, for the chart


def fleet_view(
    devices: list[Brief], now: float, stale_s: float, site: str, text: str, page: int
) -> FleetView:
    lines = [line(d, now, stale_s) for d in devices]
    per_site: Counter[str] = Counter(d.site for d in lines)
    up_site: Counter[str] = Counter(d.site for d in lines if d.online)
    versions: Counter[str] = Counter(
        f"{m.get('name')} v{m.get('version')}" for d in devices for m in d.models
    )
    chosen = [
        d
        for d in lines
        if (not site or d.site == site) and (not text or text.lower() in d.device_id.lower())
    ]
    chosen.sort(key=lambda d: (d.online, d.health == "ok", d.device_id))  # trouble first
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    return FleetView(
        total=len(lines),
        online=sum(d.online for d in lines),
        unhealthy=sum(d.health != "ok" for d in lines),
        backlog=sum(d.backlog for d in lines),
        sites=[(s, n, up_site[s]) for s, n in sorted(per_site.items())],
        versions=sorted(versions.items()),
        rows=chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        page=page,
        pages=pages,
        seen=[d.last_seen for d in devices if d.last_seen is not None],
    )


def conditions(devices: list[Brief], now: float, stale_s: float) -> list[dict[str, Any]]:
    """What is wrong right now, device by device, from the latest reports (worst first)."""
    found: list[dict[str, Any]] = []
    for device in devices:
        if device.revoked:
            continue
        problem = health(device)
        if not online(device, now, stale_s):
            found.append(
                {
                    "severity": "warning",
                    "device": device.device_id,
                    "site": device.site,
                    "summary": f"silent: last seen {ago(device.last_seen, now)}",
                }
            )
        elif problem not in ("ok", "no report yet"):
            found.append(
                {
                    "severity": "critical" if "failed" in problem else "warning",
                    "device": device.device_id,
                    "site": device.site,
                    "summary": problem,
                }
            )
    found.sort(key=lambda c: (c["severity"] != "critical", c["device"]))
    return found


@dataclass
class ModelTraffic:
    """One model's traffic over the devices that run it, from their latest reports."""

    devices: int = 0
    requests: int = 0
    errors: int = 0
    escalations: int = 0
    edge: int = 0
    cloud: int = 0
    p99_ms: float | None = None
    per_version: dict[str, int] = field(default_factory=dict)  # devices per running version

    @property
    def escalation_rate(self) -> str:
        return f"{100 * self.escalations / self.requests:.1f}%" if self.requests else "—"

    @property
    def error_rate(self) -> str:
        return f"{100 * self.errors / self.requests:.2f}%" if self.requests else "—"


def model_traffic(name: str, devices: list[Brief]) -> ModelTraffic:
    traffic = ModelTraffic()
    for device in devices:
        status = device.status
        if status is None or not any(m.get("name") == name for m in device.models):
            continue
        traffic.devices += 1
        for m in device.models:
            if m.get("name") == name:
                version = str(m.get("version"))
                traffic.per_version[version] = traffic.per_version.get(version, 0) + 1
        inference = status.get("inference") or {}
        traffic.edge += int(inference.get("requests_edge") or 0)
        traffic.cloud += int(inference.get("requests_cloud") or 0)
        for h in status.get("model_health") or []:
            if h.get("name") == name:
                traffic.requests += int(h.get("requests") or 0)
                traffic.errors += int(h.get("errors") or 0)
                traffic.escalations += int(h.get("escalations") or 0)
                if h.get("p99_ms") is not None:
                    traffic.p99_ms = max(traffic.p99_ms or 0.0, float(h["p99_ms"]))
    return traffic


@dataclass
class SiteFlow:
    site: str
    devices: int = 0
    ingested: int = 0
    synced: int = 0
    backlog: int = 0
    sync_records_per_s: float = 0.0
    sync_bytes_per_s: float = 0.0


@dataclass
class DataFlow:
    sites: list[SiteFlow]

    @property
    def total(self) -> SiteFlow:
        every = SiteFlow("all sites")
        for s in self.sites:
            every.devices += s.devices
            every.ingested += s.ingested
            every.synced += s.synced
            every.backlog += s.backlog
            every.sync_records_per_s += s.sync_records_per_s
            every.sync_bytes_per_s += s.sync_bytes_per_s
        return every


def data_flow(devices: list[Brief]) -> DataFlow:
    """Ingest and sync per site, summed over the devices' latest store reports."""
    sites: dict[str, SiteFlow] = {}
    for device in devices:
        flow = sites.setdefault(device.site, SiteFlow(device.site))
        flow.devices += 1
        flow.ingested += int(device.store("records_ingested"))
        flow.synced += int(device.store("records_synced"))
        flow.backlog += int(device.store("backlog_records"))
        flow.sync_records_per_s += float(device.store("sync_records_per_s"))
        flow.sync_bytes_per_s += float(device.store("sync_bytes_per_s"))
    return DataFlow(sorted(sites.values(), key=lambda s: s.site))


class Lake(Protocol):
    def versions(self) -> dict[str, int]: ...
    def files(self, stream: str) -> int: ...
    def count(self, stream: str) -> int: ...


@dataclass
class LakeTable:
    name: str
    version: int
    files: int
    rows: int


def lake_tables(lake: Lake) -> list[LakeTable]:
    return [
        LakeTable(name, version, lake.files(name), lake.count(name))
        for name, version in sorted(lake.versions().items())
    ]
