"""A local fleet: one cloud and named edges as real processes, driven over their APIs.

The demo tells its story with it and the integration tests drive it: both exercise the same
processes, links and calls a real deployment would. The edges run in the secure LAN mode: the
fleet issues each site a key (ingest, infer, read) and an edge's ``url`` carries it as HTTP
basic auth (``http://lan:KEY@127.0.0.1:PORT``), so any HTTP client given that URL is a site
client; site peers reach each other on their peer listeners over mutual TLS.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hybridai.demo.launcher import Child, Launcher, free_port
from hybridai.demo.netlink import NetLink
from hybridai.link.tls import client_context


class FleetError(RuntimeError):
    pass


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise FleetError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class LocalFleet:
    def __init__(self, workspace: Path, cloud_env: dict[str, str] | None = None) -> None:
        self.workspace = workspace
        self.launcher = Launcher(workspace)
        self.cloud_env = cloud_env or {}
        self.cloud: Child | None = None
        self.cloud_port = 0
        self.edges: dict[str, Child] = {}
        self.links: dict[str, NetLink] = {}
        self._edge_args: dict[str, tuple[list[str], int, dict[str, str]]] = {}
        self.api: httpx.Client | None = None
        self.site_keys: dict[str, str] = {}  # site -> its LAN clients' key (all roles)
        self.edge_sites: dict[str, str] = {}  # device -> site

    @property
    def ca_file(self) -> Path:
        """The platform CA the cloud creates at its first start (edges and clients trust it)."""
        return self.workspace / "cloud" / "pki" / "ca.crt"

    def verify(self) -> ssl.SSLContext:
        """A TLS 1.3 client context that verifies the cloud (for httpx's ``verify=``)."""
        return client_context(self.ca_file)

    # -- processes ------------------------------------------------------------------------

    def start_cloud(self) -> Child:
        self.cloud_port = self.cloud_port or free_port()
        env = {
            "HYBRIDAI_CLOUD_SYNC_INTERVAL_S": "1",
            "HYBRIDAI_CLOUD_HEARTBEAT_INTERVAL_S": "1",
            **self.cloud_env,
        }
        self.cloud = self.launcher.spawn(
            "cloud",
            ["cloud", "serve", "--data-dir", "cloud", "--port", str(self.cloud_port)],
            self.cloud_port,
            env,
            ca_file=self.ca_file,
        )
        self.launcher.wait_ready(self.cloud)
        if self.api is None:
            token = (self.workspace / "cloud" / "admin.token").read_text().strip()
            self.api = httpx.Client(
                base_url=self.cloud.url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
                verify=self.verify(),
            )
        return self.cloud

    def start_edge(
        self,
        device: str,
        site: str,
        kind: str = "edge-server",
        env: dict[str, str] | None = None,
        enroll: bool = True,
    ) -> Child:
        """Start (or restart, same port and data) an edge behind its own cuttable link."""
        if device not in self._edge_args:
            link = NetLink("127.0.0.1", self.cloud_port)
            link_port = link.start()
            self.links[device] = link
            port, peer_port = free_port(), free_port()
            self.edge_sites[device] = site
            args = [
                "edge",
                "run",
                "--cloud",
                f"https://127.0.0.1:{link_port}",  # TLS end to end: the link relays TCP
                "--ca-file",
                str(self.ca_file.resolve()),
                "--device-id",
                device,
                "--kind",
                kind,
                "--data-dir",
                device,
                "--port",
                str(port),
            ]
            if enroll:
                token = self.call(
                    "POST",
                    "/api/v1/enrollment-tokens",
                    json={"site": site, "device_id": device, "ttl_s": 600},
                )["token"]
                args += ["--enroll-token", token]
                self.site_key(site)
            self._edge_args[device] = (
                args,
                port,
                {
                    "HYBRIDAI_EDGE_POLL_WAIT_S": "2",
                    "HYBRIDAI_EDGE_PEER_PORT": str(peer_port),
                    **(env or {}),
                },
            )
            first = True
        else:
            first = False
        args, port, child_env = self._edge_args[device]
        child = self.launcher.spawn(device, args, port, child_env)
        key = self.site_keys.get(site)
        if key is not None:
            child.url = f"http://lan:{key}@127.0.0.1:{port}"
        self.edges[device] = child
        self.launcher.wait_ready(child)
        if first and enroll and key is not None:
            self.wait_admitted(device)
        return child

    def site_key(self, site: str) -> str:
        """The site's key for LAN clients (ingest, infer, read), issued on first use."""
        if site not in self.site_keys:
            created = self.call(
                "POST",
                f"/api/v1/sites/{site}/keys",
                json={"name": "local-fleet", "roles": ["ingest", "infer", "read"]},
            )
            self.site_keys[site] = created["key"]
        return self.site_keys[site]

    def wait_admitted(self, device: str, timeout_s: float = 60) -> None:
        """Until the edge accepts its site's key (it comes with its first desired state)."""

        def admitted() -> bool:
            try:
                url = self.edges[device].url
                return httpx.get(f"{url}/api/v1/status", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(f"{device} to hold its site's keys", admitted, timeout_s)

    def kill(self, name: str) -> None:
        """Kill -9 a process of the fleet (``cloud`` or an edge's name)."""
        child = self.cloud if name == "cloud" else self.edges[name]
        assert child is not None
        self.launcher.kill(child)

    def close(self) -> None:
        # The admin client first: its idle keep-alive connection would hold the cloud's
        # graceful shutdown until the kill after the grace period (8 s per fleet).
        if self.api is not None:
            self.api.close()
        self.launcher.stop_all()
        for link in self.links.values():
            link.close()

    # -- calls ----------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self.api is not None, "start the cloud first"
        response = self.api.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise FleetError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def edge_status(self, device: str) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(
            f"{self.edges[device].url}/api/v1/status", timeout=5
        ).json()
        return data

    def lake_count(self, sql: str) -> int:
        try:
            result = self.call("POST", "/api/v1/lake/query", json={"sql": sql})
        except FleetError:
            return 0
        return int(result["rows"][0][0])

    def serving(self, model: str, version: str) -> bool:
        """Whether every edge serves ``model`` at ``version``."""
        for device in self.edges:
            models = {m["name"]: m for m in self.edge_status(device)["models"]}
            m = models.get(model)
            if not m or m["version"] != version or m["state"] != "ready":
                return False
        return True

    def wait_enrolled(self, count: int, timeout_s: float = 30) -> None:
        wait_for(
            f"{count} devices to enroll",
            lambda: len(self.call("GET", "/api/v1/devices")) >= count,
            timeout_s,
        )

    def wait_drained(self, timeout_s: float = 90) -> None:
        def drained() -> bool:
            return all(self.edge_status(d)["store"]["backlog_records"] == 0 for d in self.edges)

        wait_for("every edge to drain its backlog", drained, timeout_s)

    def train(self, spec: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
        run = self.call("POST", "/api/v1/training-runs", json=spec)
        deadline = time.monotonic() + timeout_s
        while run["status"] == "running":
            if time.monotonic() > deadline:
                raise FleetError(f"training did not finish in {timeout_s:.0f}s")
            time.sleep(0.5)
            run = self.call("GET", f"/api/v1/training-runs/{run['run_id']}")
        if run["status"] != "succeeded":
            raise FleetError(f"training failed: {run['error']}")
        return dict(run)
