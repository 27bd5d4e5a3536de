"""A real cloud and real edges as separate processes on loopback, driven over HTTP only.

The hybrid loop end to end (enroll, ingest, sync, train, roll out, place inference, retrain,
roll out again) on each metadata backend, and the clear 4xx answers every API owes a client
that gets something wrong.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _fleet import (
    MODEL,
    PATIENT_EDGE,
    Feeder,
    assert_lake_exactly,
    assert_probabilities,
    cloud_client,
    error_of,
    infer,
    infer_body,
    ingest,
    local_fleet,
    upload_and_deploy,
)
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import pm_training_spec
from hybridai.edge.identity import DeviceIdentity

pytestmark = pytest.mark.slow

EDGES = (("edge-a", "site-north", "edge-server"), ("edge-b", "site-south", "sensor-gateway"))


@pytest.fixture
def fleet(tmp_path: Path, metadata_url: str) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet", {"HYBRIDAI_DATABASE_URL": metadata_url}) as f:
        yield f


@pytest.fixture
def small_fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    """One cloud on SQLite and one edge."""
    with local_fleet(tmp_path / "fleet") as f:
        f.start_edge("edge-a", "site-north", env=PATIENT_EDGE)
        f.wait_enrolled(1)
        yield f


def _wait_serving(fleet: LocalFleet, version: str) -> None:
    wait_for(f"every edge to serve {MODEL} v{version}", lambda: fleet.serving(MODEL, version), 60)


def _desired_state(
    fleet: LocalFleet, device: str, etag: str | None = None, wait: float = 0
) -> httpx.Response:
    assert fleet.api is not None
    headers = {"If-None-Match": etag} if etag else {}
    return fleet.api.get(
        f"/api/v1/devices/{device}/desired-state", params={"wait": wait}, headers=headers
    )


def test_hybrid_loop(fleet: LocalFleet) -> None:
    # Prepare: two edges at two sites, each with its own plant.
    for device, site, kind in EDGES:
        fleet.start_edge(device, site, kind, env=PATIENT_EDGE)
    fleet.wait_enrolled(2)

    # Enrollment: the registry knows where each device is, what it is and what it can do.
    devices = {d["device_id"]: d for d in fleet.call("GET", "/api/v1/devices")}
    assert sorted(devices) == ["edge-a", "edge-b"]
    for device, site, kind in EDGES:
        assert (devices[device]["site"], devices[device]["kind"]) == (site, kind)
        capabilities = devices[device]["capabilities"]
        assert capabilities["cores"] >= 1 and capabilities["memory_mb"] >= 1
        assert "CPUExecutionProvider" in capabilities["execution_providers"]
        assert devices[device]["revoked"] is False

    feeders = {
        device: Feeder(fleet.edges[device].url, device, machines=8, seed=11 + n)
        for n, (device, _, _) in enumerate(EDGES)
    }
    for _ in range(10):  # 10 chunks of 40 ticks x 8 machines: 3200 readings per edge
        for feeder in feeders.values():
            feeder.feed(ticks=40)
    assert all(f.acked["failures"] > 0 for f in feeders.values()), "the plants never failed"

    # Sync: every acknowledged record is in the lake exactly once, under its device and site.
    fleet.wait_drained()
    acked = {d: sum(f.acked[d] for f in feeders.values()) for d in ("telemetry", "failures")}
    assert_lake_exactly(fleet, acked)
    per_device = fleet.call(
        "POST",
        "/api/v1/lake/query",
        json={
            "sql": "SELECT device_id, site, count(*) FROM telemetry "
            "GROUP BY device_id, site ORDER BY device_id"
        },
    )["rows"]
    assert per_device == [
        [device, site, feeders[device].acked["telemetry"]] for device, site, _ in EDGES
    ]
    for device in feeders:
        store = fleet.edge_status(device)["store"]
        assert store["records_synced"] == store["records_ingested"] == feeders[device].total

    # Train v1 on the lake; the cloud deploys it and both edges load it.
    v1 = fleet.train(pm_training_spec(MODEL).model_dump())
    assert v1["version"] == "1"
    assert {"edge", "cloud"} <= set(v1["metrics"])
    _wait_serving(fleet, "1")

    # Placement at the edge, per request (the cloud loads its model first, as a warm-up, so
    # that a slow first load cannot exceed the edge's cloud timeout).
    edge_url = fleet.edges["edge-a"].url
    assert fleet.api is not None
    assert fleet.api.get(f"/v2/models/{MODEL}/ready", timeout=60).status_code == 200
    params = assert_probabilities(infer(edge_url))
    assert (params["placement"], params["degraded"]) == ("edge", False)
    assert params["device_id"] == "edge-a"
    params = assert_probabilities(infer(edge_url, {"placement": "cloud"}))
    assert (params["placement"], params["reason"]) == ("cloud", "placement_hint_cloud")
    assert params["degraded"] is False
    restricted = {"data_class": "restricted", "placement": "cloud"}
    params = assert_probabilities(infer(edge_url, restricted))
    assert (params["placement"], params["reason"]) == ("edge", "restricted_data_stays_on_site")
    # Any v2 client can ask the cloud directly (over TLS), with the same request.
    direct = fleet.api.post(f"/v2/models/{MODEL}/infer", json=infer_body(3, restricted))
    params = assert_probabilities(direct)
    assert params["placement"] == "cloud"

    # Desired state: ETag, and a conditional GET that finds nothing new answers 304.
    first = _desired_state(fleet, "edge-a")
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    desired = first.json()
    assert etag == f'"{desired["generation"]}"'
    assert [(m["name"], m["version"], m["variant"]) for m in desired["models"]] == [
        (MODEL, "1", "edge")
    ]
    unchanged = _desired_state(fleet, "edge-a", etag, wait=0)
    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == etag and not unchanged.content

    # Retrain on more data: v2 is deployed and the edges move to it, keeping v1.
    for feeder in feeders.values():
        feeder.feed(ticks=40)
    fleet.wait_drained()
    v2 = fleet.train(pm_training_spec(MODEL).model_dump())
    assert v2["version"] == "2"
    models = {m["name"]: m for m in fleet.call("GET", "/api/v1/models")}
    assert models[MODEL]["deployed_version"] == "2"
    assert models[MODEL]["versions"] == ["1", "2"]
    _wait_serving(fleet, "2")

    changed = _desired_state(fleet, "edge-a", etag, wait=0)
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert [m["version"] for m in changed.json()["models"]] == ["2"]

    for device in feeders:
        url = fleet.edges[device].url
        latest = infer(url, {"placement": "edge"})
        assert_probabilities(latest)
        assert latest.json()["model_version"] == "2"
        previous = infer(url, {"placement": "edge"}, path=f"/v2/models/{MODEL}/versions/1")
        params = assert_probabilities(previous)
        assert previous.json()["model_version"] == "1"
        assert params["placement"] == "edge"
        metadata = httpx.get(f"{url}/v2/models/{MODEL}", timeout=10).json()
        assert sorted(metadata["versions"]) == ["1", "2"]

    # Nothing was lost or doubled along the way.
    fleet.wait_drained()
    acked = {d: sum(f.acked[d] for f in feeders.values()) for d in ("telemetry", "failures")}
    assert_lake_exactly(fleet, acked)


# -- errors ------------------------------------------------------------------------------


def _enroll_probe(fleet: LocalFleet, workspace: Path, device: str, site: str) -> ssl.SSLContext:
    """Enroll a device by hand, as an agent would; return a TLS context presenting its cert."""
    token = fleet.call(
        "POST", "/api/v1/enrollment-tokens", json={"site": site, "device_id": device}
    )["token"]
    identity = DeviceIdentity(workspace, device, ca_file=fleet.ca_file)
    with cloud_client(fleet) as anonymous:
        response = anonymous.post("/api/v1/enroll", json=_enroll_request(token, identity))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["device_id"], body["site"]) == (device, site)
    identity.store(body["certificate"], body["ca_certificate"])
    return identity.context(time.time())


def _enroll_request(token: str, identity: DeviceIdentity) -> dict[str, Any]:
    return {
        "token": token,
        "device_id": identity.device_id,
        "kind": "sensor-gateway",
        "capabilities": {"cores": 1, "memory_mb": 256},
        "agent_version": "test",
        "csr": identity.csr(),
    }


def _status_report(device: str) -> dict[str, Any]:
    return {"device_id": device, "agent_version": "test", "uptime_s": 1.0}


def test_errors_are_clear_4xx(
    small_fleet: LocalFleet, classifier_onnx: bytes, tmp_path: Path
) -> None:
    fleet = small_fleet
    assert fleet.cloud is not None and fleet.api is not None
    edge, admin = fleet.edges["edge-a"].url, fleet.api
    anonymous = cloud_client(fleet)
    upload_and_deploy(fleet, classifier_onnx)
    _wait_serving(fleet, "1")

    # Unknown model: the cloud says 404. The edge has no copy, asks the cloud and passes its
    # 404 on (the link is healthy: the breaker stays closed).
    assert error_of(infer(admin, path="/v2/models/nope")) == (404, "model_not_found")
    at_edge = infer(edge, path="/v2/models/nope")
    assert error_of(at_edge) == (404, "model_not_found")
    assert "'nope' is not in the registry" in at_edge.json()["error"]
    # ... unless the data may not leave the site: then nowhere can serve it, for now.
    restricted = infer(edge, {"data_class": "restricted"}, path="/v2/models/nope")
    assert error_of(restricted) == (503, "model_not_ready")

    # Tensors that do not fit the model: the same answer at the edge and at the cloud.
    wrong_shape = infer_body(3)
    wrong_shape["inputs"][0].update(shape=[3, 5], data=[0.5] * 15)
    wrong_datatype = infer_body(3)
    wrong_datatype["inputs"][0]["datatype"] = "FP64"
    as_json = {"Content-Type": "application/json"}
    edge_client = httpx.Client(base_url=edge, timeout=10)
    for client in (edge_client, admin):
        path = f"/v2/models/{MODEL}/infer"
        assert error_of(client.post(path, json=wrong_shape)) == (400, "shape_mismatch")
        assert error_of(client.post(path, json=wrong_datatype)) == (400, "datatype_mismatch")
        not_json = client.post(path, content=b'{"inputs": [', headers=as_json)
        assert error_of(not_json) == (400, "malformed_json")

    # Ingest: malformed JSON and a record without ts are refused, and nothing is stored.
    before = fleet.edge_status("edge-a")["store"]["records_ingested"]
    records = "/api/v1/streams/telemetry/records"
    malformed = edge_client.post(records, content=b'{"records": [{"ts": 1')
    assert error_of(malformed) == (400, "malformed_json")
    good = {"ts": 1_700_000_000.0, "machine_id": "m1", "vibration": 1.0}
    no_ts = {"machine_id": "m1", "vibration": 2.0}
    refused = ingest(edge, "telemetry", [good, no_ts])
    assert error_of(refused) == (400, "invalid_input")
    assert "ts" in refused.json()["error"]
    assert fleet.edge_status("edge-a")["store"]["records_ingested"] == before
    accepted = ingest(edge, "telemetry", [good])  # not a duplicate: it was never stored
    assert accepted.json() == {"stream": "telemetry", "accepted": 1, "duplicates": 0}
    assert fleet.edge_status("edge-a")["store"]["records_ingested"] == before + 1

    # Enrollment with a token the cloud never issued.
    stranger = DeviceIdentity(tmp_path / "stranger", "probe-0", ca_file=fleet.ca_file)
    bad = anonymous.post("/api/v1/enroll", json=_enroll_request("not-a-token", stranger))
    assert error_of(bad) == (401, "bad_enrollment_token")

    # A device sees only its own state.
    probe_tls = _enroll_probe(fleet, tmp_path / "probe", "probe-1", "site-north")
    probe = cloud_client(fleet, verify=probe_tls)
    own = probe.get("/api/v1/devices/probe-1/desired-state")
    assert own.status_code == 200, own.text
    assert [(m["name"], m["version"]) for m in own.json()["models"]] == [(MODEL, "1")]
    other = probe.get("/api/v1/devices/edge-a/desired-state")
    assert error_of(other) == (403, "forbidden")
    as_ghost = probe.post("/api/v1/devices/ghost/status", json=_status_report("ghost"))
    assert error_of(as_ghost) == (403, "forbidden")
    # An operator may act for any device, but one that never enrolled does not exist.
    unknown = admin.post("/api/v1/devices/ghost/status", json=_status_report("ghost"))
    assert error_of(unknown) == (404, "unknown_device")

    # No credentials, or made-up ones.
    assert error_of(anonymous.get("/api/v1/devices")) == (401, "unauthenticated")
    assert error_of(anonymous.post(f"/v2/models/{MODEL}/infer", json=infer_body())) == (
        401,
        "unauthenticated",
    )
    made_up = cloud_client(fleet, token="nope")
    assert error_of(made_up.get("/api/v1/devices")) == (401, "unauthenticated")
    for client in (anonymous, probe, made_up, edge_client):
        client.close()

    # Both processes took all of this in their stride.
    assert all(child.alive() for child in (fleet.cloud, fleet.edges["edge-a"]))
    assert httpx.get(f"{edge}/v2/health/live", timeout=5).json() == {"live": True}
    assert admin.get("/v2/health/live").json() == {"live": True}
    assert assert_probabilities(infer(edge, {"placement": "edge"}))["placement"] == "edge"
    assert assert_probabilities(infer(admin))["placement"] == "cloud"
