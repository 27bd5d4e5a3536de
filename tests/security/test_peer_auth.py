"""Site peers and the LAN API against real processes: who may ingest, infer and pose as a peer.

One cloud; an edge server and a thin gateway of site ``plant-a``; an ``outsider`` edge of site
``plant-b`` (a genuine platform device, so its certificate chains to the platform CA: the
strongest impostor short of a stolen key). The attacker sits on the LAN with plain HTTP
clients, the outsider's certificate, or a server on a peer's advertised address.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _fleet import error_of, local_fleet
from _models import train_classifier_onnx
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.link.tls import ServerTls, client_context, server_context

pytestmark = pytest.mark.slow
SITE, OTHER_SITE = "plant-a", "plant-b"
ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.7, 0.0]]
FAST = {"HYBRIDAI_EDGE_PROBE_INTERVAL_S": "0.3"}


def body(**parameters: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}],
        "parameters": parameters,
    }


def _plain(url: str) -> str:
    """The edge's address without the fleet's site key: what anyone on the LAN can reach."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _ready(fleet: LocalFleet, device: str, model: str) -> bool:
    models = {m["name"]: m for m in fleet.edge_status(device)["models"]}
    return model in models and models[model]["state"] == "ready"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    workspace: Path = tmp_path_factory.mktemp("peer-auth")
    with local_fleet(workspace) as fleet:
        fleet.start_edge("server-1", SITE, "edge-server", env=FAST)
        fleet.start_edge(
            "gw-1", SITE, "sensor-gateway", env={**FAST, "HYBRIDAI_EDGE_MEMORY_MB": "256"}
        )
        fleet.start_edge("outsider", OTHER_SITE, env={"HYBRIDAI_EDGE_LAN_AUTH": "open"})
        fleet.wait_enrolled(3)
        onnx = train_classifier_onnx()
        version = fleet.call(
            "POST",
            "/api/v1/models/heavy/versions",
            files={"edge": ("edge.onnx", onnx), "cloud": ("cloud.onnx", onnx)},
        )["version"]
        fleet.call(  # too big for the gateway: it hands heavy to server-1
            "PUT",
            "/api/v1/deployments/heavy",
            json={
                "name": "heavy",
                "version": str(version),
                "policy": {"kind": "latency", "needs": {"min_memory_mb": 1024}},
            },
        )
        wait_for("server-1 to load heavy", lambda: _ready(fleet, "server-1", "heavy"), 60)
        yield fleet


def _device_client(fleet: LocalFleet, device: str) -> httpx.Client:
    """A client presenting ``device``'s own certificate (its files, as the edge keeps them)."""
    tls = fleet.workspace / device / "tls"
    context = client_context(fleet.ca_file, tls / "device.crt", tls / "device.key")
    context.check_hostname = False  # a device certificate names a device, not a host
    return httpx.Client(verify=context, timeout=30)


def _peer_url(fleet: LocalFleet, device: str) -> str:
    url: str = fleet.call("GET", f"/api/v1/devices/{device}")["status"]["advertise_url"]
    return url


def test_the_lan_api_takes_only_the_sites_keys_with_the_right_role(fleet: LocalFleet) -> None:
    edge = fleet.edges["server-1"].url
    anyone = _plain(edge)
    records = {"records": [{"ts": time.time(), "machine": "m01", "vibration": 1.0}]}

    # Anyone on the LAN: no ingest (lake poisoning), no inference (nor the cloud's through
    # this edge's identity), no status.
    for method, path, payload in (
        ("POST", "/api/v1/streams/telemetry/records", records),
        ("POST", "/v2/models/heavy/infer", body()),
        ("POST", "/v2/models/heavy/infer", body(placement="cloud")),
        ("GET", "/api/v1/status", None),
        ("GET", "/metrics", None),
    ):
        answer = httpx.request(method, f"{anyone}{path}", json=payload, timeout=30)
        assert error_of(answer) == (401, "unauthenticated"), (path, answer.text)
        assert "hybridai site key create" in answer.json()["error"]
    assert httpx.get(f"{anyone}/v2/health/live", timeout=30).status_code == 200

    # A made-up key, and a genuine key of another site.
    other_key = fleet.site_key(OTHER_SITE)
    for key in ("hai_site_0000_guess", other_key):
        answer = httpx.get(
            f"{anyone}/api/v1/status", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert error_of(answer) == (401, "unauthenticated")
        assert other_key not in answer.text

    # A read-only key reads, and may not ingest.
    reader = fleet.call(
        "POST", f"/api/v1/sites/{SITE}/keys", json={"name": "dashboard", "roles": ["read"]}
    )
    assert reader["roles"] == ["read"] and "key_hash" not in reader
    as_reader = {"Authorization": f"Bearer {reader['key']}"}

    def reader_admitted() -> bool:
        status = httpx.get(f"{anyone}/api/v1/status", headers=as_reader, timeout=30)
        return status.status_code == 200

    wait_for("server-1 to hold the new key", reader_admitted, 30)
    refused = httpx.post(
        f"{anyone}/api/v1/streams/telemetry/records", json=records, headers=as_reader, timeout=30
    )
    assert error_of(refused) == (403, "forbidden")
    assert "--role ingest" in refused.json()["error"]

    # The fleet's key (ingest, infer, read) ingests; basic auth carries it.
    assert (
        httpx.post(f"{edge}/api/v1/streams/telemetry/records", json=records, timeout=30).json()[
            "accepted"
        ]
        == 1
    )

    # Revoked at the cloud: refused at the edge once its desired state says so.
    listed = fleet.call("GET", f"/api/v1/sites/{SITE}/keys")
    assert {k["key_id"] for k in listed} >= {reader["key_id"]}
    assert all("key" not in k for k in listed)
    fleet.call("DELETE", f"/api/v1/sites/{SITE}/keys/{reader['key_id']}")
    wait_for("server-1 to refuse the revoked key", lambda: not reader_admitted(), 30)


def test_the_peer_listener_admits_only_devices_of_the_same_site(fleet: LocalFleet) -> None:
    peer_url = _peer_url(fleet, "server-1")
    assert peer_url.startswith("https://"), peer_url

    with _device_client(fleet, "gw-1") as neighbour:
        answer = neighbour.post(f"{peer_url}/v2/models/heavy/infer", json=body())
        assert answer.status_code == 200, answer.text
        # A peer may run inferences, nothing else.
        ingest = neighbour.post(
            f"{peer_url}/api/v1/streams/telemetry/records",
            json={"records": [{"ts": 1.0, "vibration": 2.0}]},
        )
        assert error_of(ingest) == (403, "forbidden")

    with _device_client(fleet, "outsider") as outsider:
        answer = outsider.post(f"{peer_url}/v2/models/heavy/infer", json=body())
        assert error_of(answer) == (403, "peer_not_on_site")
        assert SITE in answer.json()["error"]

    # No certificate and no key: nothing, over TLS as over plain HTTP.
    verify = client_context(fleet.ca_file)
    verify.check_hostname = False
    answer = httpx.post(f"{peer_url}/v2/models/heavy/infer", json=body(), verify=verify, timeout=30)
    assert error_of(answer) == (401, "unauthenticated")


def test_open_mode_is_explicit_and_shows_in_status(fleet: LocalFleet) -> None:
    outsider = _plain(fleet.edges["outsider"].url)
    status = httpx.get(f"{outsider}/api/v1/status", timeout=30)
    assert status.status_code == 200 and status.json()["lan_auth"] == "open"
    secured = fleet.edge_status("gw-1")
    assert secured["lan_auth"] == "keys"
    log = (fleet.workspace / "outsider.log").read_text()
    assert "LAN API is OPEN" in log


class Impostor:
    """A server on a peer's advertised address that answers every inference and keeps them.

    Over https it presents the outsider's genuine platform certificate (another site's device).
    """

    def __init__(self, url: str, tls: ServerTls | None) -> None:
        host, _, port = url.partition("://")[2].partition("/")[0].rpartition(":")
        impostor = self
        self.connections = 0
        self.requests: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                impostor.requests.append({"path": self.path, "body": self.rfile.read(length)})
                answer = {
                    "model_name": "heavy",
                    "outputs": [
                        {
                            "name": "probabilities",
                            "shape": [2, 2],
                            "datatype": "FP32",
                            "data": [0.5, 0.5, 0.5, 0.5],
                        }
                    ],
                    "parameters": {"edge_service_ms": 1.0},
                }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        context = None
        if tls is not None:
            context = server_context(tls)
            context.verify_mode = ssl.CERT_NONE

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def get_request(self) -> Any:
                connection, address = self.socket.accept()  # TCP: the caller came here
                impostor.connections += 1
                if context is not None:  # the handshake runs in the handler's thread
                    connection = context.wrap_socket(
                        connection, server_side=True, do_handshake_on_connect=False
                    )
                return connection, address

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a caller that hangs up mid-handshake

        self.server = Server((host, int(port)), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_gateway_never_hands_restricted_data_to_an_impostor_at_its_peers_address(
    fleet: LocalFleet,
) -> None:
    gateway = fleet.edges["gw-1"].url

    def handed_to_peer() -> bool:
        answer = httpx.post(
            f"{gateway}/v2/models/heavy/infer", json=body(data_class="restricted"), timeout=30
        )
        return answer.status_code == 200 and answer.json()["parameters"]["placement"] == "peer"

    wait_for("gw-1 to hand heavy to server-1", handed_to_peer, 60)

    # server-1 goes away; someone else takes its advertised address before the cloud notices.
    peer_url = _peer_url(fleet, "server-1")
    fleet.kill("server-1")
    tls = None
    if peer_url.startswith("https://"):
        outsider = fleet.workspace / "outsider" / "tls"
        tls = ServerTls(outsider / "device.crt", outsider / "device.key", fleet.ca_file)
    impostor = Impostor(peer_url, tls)
    try:
        answers = []
        deadline = time.monotonic() + 8  # well inside the cloud's 10 s until a peer is stale
        while time.monotonic() < deadline and impostor.connections < 3:
            answers.append(
                httpx.post(
                    f"{gateway}/v2/models/heavy/infer",
                    json=body(data_class="restricted"),
                    timeout=30,
                )
            )
            time.sleep(0.2)
    finally:
        impostor.close()

    assert impostor.requests == [], "restricted data reached an impostor"
    assert impostor.connections >= 1, "gw-1 never tried its peer's address"
    for answer in answers:  # nowhere on site to run it, and restricted data never leaves
        assert answer.status_code == 503, answer.text
