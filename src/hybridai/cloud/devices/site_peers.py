"""The site peers of a device: the other devices of its site that offer their local API.

The cloud is the only party that knows the whole site (edges only dial out), so it tells each
device, in its desired state, who its neighbours are and what they serve. Their load is left
out on purpose: it changes with every report, and each change would be a new desired-state
generation waking every long-poll of the site; an edge measures a peer's load itself, from
its own calls (latency estimates, in-flight requests, a breaker per peer). A peer that has not
reported recently is left out: a request handed to a dead neighbour would only wait.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.protocol.placement import SitePeer
from hybridai.storage.tables import DeviceRow


def site_peers(session: Session, device_id: str, now: float, stale_s: float) -> list[SitePeer]:
    """Live, unrevoked devices of ``device_id``'s site that advertise a URL, by id."""
    me = session.get(DeviceRow, device_id)
    if me is None:
        return []
    rows = session.scalars(
        select(DeviceRow)
        .where(DeviceRow.site == me.site, DeviceRow.device_id != device_id)
        .order_by(DeviceRow.device_id)
    )
    peers: list[SitePeer] = []
    for row in rows:
        status = row.status or {}
        url = status.get("advertise_url")
        if row.revoked or not url or row.last_seen is None or now - row.last_seen > stale_s:
            continue
        capabilities = row.capabilities or {}
        peers.append(
            SitePeer(
                device_id=row.device_id,
                kind=row.kind,
                url=str(url),
                models={
                    str(m["name"]): str(m["version"])
                    for m in status.get("models", [])
                    if m.get("state") == "ready"
                },
                accelerator=capabilities.get("accelerator"),
                memory_mb=capabilities.get("memory_mb"),
            )
        )
    return peers
