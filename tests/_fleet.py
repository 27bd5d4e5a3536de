"""Helpers for tests that run a real local fleet: processes, plant data, v2 requests.

The fleet itself is ``hybridai.demo.fleet.LocalFleet``; this module adds what tests need on
top: a fleet that is always closed, producers that count what the edges acknowledged, lake
totals and small v2 request builders. The fleet runs the secure LAN mode: an edge's ``url``
carries its site's key (``http://lan:KEY@...``), so the helpers below are site clients; strip
the key to play someone else on the LAN (``tests/security/test_peer_auth.py``).
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from hybridai.demo.fleet import LocalFleet
from hybridai.demo.simulator import FEATURES, Plant

MODEL = "pm"
STREAMS = ("telemetry", "failures")
# The edge waits 2 s for a cloud inference by default, then answers itself (or 503). On a busy
# 2-core CI machine a healthy cloud can take longer, which would make "the cloud answered"
# assertions flaky; a cut link still fails at once (the relay resets connections).
PATIENT_EDGE = {"HYBRIDAI_EDGE_CLOUD_TIMEOUT_S": "15"}


@contextlib.contextmanager
def local_fleet(workspace: Path, cloud_env: dict[str, str] | None = None) -> Iterator[LocalFleet]:
    """A started cloud in ``workspace``; every process and link is stopped on the way out."""
    workspace.mkdir(parents=True, exist_ok=True)
    fleet = LocalFleet(workspace, cloud_env)
    try:
        fleet.start_cloud()
        yield fleet
    finally:
        fleet.close()


def ingest(edge_url: str, stream: str, records: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(
        f"{edge_url}/api/v1/streams/{stream}/records", json={"records": records}, timeout=30
    )


class Feeder:
    """One edge's plant: steps it, ingests what it produced, counts what the edge acknowledged.

    Only records answered with 200 count as acknowledged: those are the ones the platform
    promises to keep.
    """

    def __init__(self, edge_url: str, device: str, machines: int, seed: int) -> None:
        self.edge_url = edge_url
        self.plant = Plant(
            [f"{device}-m{i:02d}" for i in range(machines)],
            seed=seed,
            start_ts=time.time() - 30 * 86400,
        )
        self.acked = dict.fromkeys(STREAMS, 0)

    @property
    def total(self) -> int:
        return sum(self.acked.values())

    def feed(self, ticks: int) -> int:
        """Step ``ticks`` ticks and ingest them (telemetry, then any failures); return records."""
        produced: dict[str, list[dict[str, Any]]] = {d: [] for d in STREAMS}
        for _ in range(ticks):
            telemetry, failures = self.plant.step()
            produced["telemetry"] += telemetry
            produced["failures"] += failures
        sent = 0
        for stream, records in produced.items():
            if not records:
                continue
            response = ingest(self.edge_url, stream, records)
            assert response.status_code == 200, response.text
            body = response.json()
            # Plant readings are all distinct: nothing may be taken for a duplicate.
            assert body == {"stream": stream, "accepted": len(records), "duplicates": 0}, body
            self.acked[stream] += len(records)
            sent += len(records)
        return sent


def lake_totals(fleet: LocalFleet) -> dict[str, dict[str, int]]:
    """Per stream: rows and distinct record ids in the lake."""
    return {
        stream: {
            "rows": fleet.lake_count(f"SELECT count(*) FROM {stream}"),
            "distinct": fleet.lake_count(f"SELECT count(DISTINCT record_id) FROM {stream}"),
        }
        for stream in STREAMS
    }


def assert_lake_exactly(fleet: LocalFleet, acked: dict[str, int]) -> None:
    """No acknowledged record lost, none stored twice."""
    totals = lake_totals(fleet)
    expected = {d: {"rows": n, "distinct": n} for d, n in acked.items()}
    assert totals == expected, f"lake holds {totals}, edges acknowledged {expected}"


def features(rows: int, offset: float = 0.0) -> list[list[float]]:
    """Plausible plant readings (vibration, temperature, pressure, rpm)."""
    return [[1.0 + 0.01 * i + offset, 60.0, 5.0, 1500.0] for i in range(rows)]


def infer_body(rows: int = 3, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input",
                "shape": [rows, len(FEATURES)],
                "datatype": "FP32",
                "data": features(rows),
            }
        ]
    }
    if parameters is not None:
        body["parameters"] = parameters
    return body


def infer(
    where: str | httpx.Client,
    parameters: dict[str, Any] | None = None,
    path: str = f"/v2/models/{MODEL}",
) -> httpx.Response:
    """A 3-row v2 request to an edge (its URL) or the cloud (a client that carries identity)."""
    body = infer_body(3, parameters)
    if isinstance(where, httpx.Client):
        return where.post(f"{path}/infer", json=body)
    return httpx.post(f"{where}{path}/infer", json=body, timeout=30)


def cloud_client(
    fleet: LocalFleet, token: str | None = None, verify: ssl.SSLContext | None = None
) -> httpx.Client:
    """A client for the cloud over TLS: anonymous, with ``token``, or with a device's ``verify``
    context (which presents its certificate). ``fleet.api`` is the admin's."""
    assert fleet.cloud is not None, "start the cloud first"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=fleet.cloud.url,
        headers=headers,
        timeout=30,
        verify=verify if verify is not None else fleet.verify(),
    )


def assert_probabilities(response: httpx.Response, rows: int = 3) -> dict[str, Any]:
    """A 200 with one probability pair per row; returns the response's parameters."""
    assert response.status_code == 200, response.text
    body = response.json()
    outputs = {o["name"]: o for o in body["outputs"]}
    probabilities = outputs["probabilities"]
    assert probabilities["shape"] == [rows, 2], probabilities
    flat = probabilities["data"]
    assert len(flat) == rows * 2, probabilities
    for i in range(rows):
        assert abs(flat[2 * i] + flat[2 * i + 1] - 1.0) < 1e-4, f"row {i}: {flat}"
    parameters: dict[str, Any] = body["parameters"]
    return parameters


def upload_and_deploy(fleet: LocalFleet, onnx: bytes, name: str = MODEL) -> str:
    """Register ``onnx`` as both variants of a new version and deploy it; return the version."""
    info = fleet.call(
        "POST",
        f"/api/v1/models/{name}/versions",
        files={"edge": ("edge.onnx", onnx), "cloud": ("cloud.onnx", onnx)},
    )
    version = str(info["version"])
    fleet.call("PUT", f"/api/v1/deployments/{name}", json={"name": name, "version": version})
    return version


def error_of(response: httpx.Response) -> tuple[int, str]:
    """``(status, code)`` of an error answer, checking it carries a message for people."""
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return response.status_code, body["code"]
