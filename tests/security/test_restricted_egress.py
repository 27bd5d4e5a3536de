"""Restricted data stays on site on every path that leaves it (issue 11.2), through real processes.

A cloud and an edge (MQTT from the Mosquitto at 127.0.0.1:1883) with data policies: a stream
with a restricted and a personal field, a stream restricted as a whole, a personal-only one.
Dead letters of those streams, hard examples of models they feed, inference of a model whose
input stream is restricted (no per-request hint), and error texts (at the edge and in the
cloud's audit log) are driven with marker values; then every file the cloud wrote (lake tables
with their ``_delta_log`` JSON, metadata database, blobs, the cloud's log) is scanned for them.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from _fleet import infer_body, ingest, local_fleet, upload_and_deploy
from _models import train_classifier_onnx
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow

BROKER = ("127.0.0.1", 1883)
SECRET_FIELD = "RECIPE-SECRET-2b7e"  # a restricted field of telemetry
SECRET_STREAM = "FORMULA-SECRET-c41d"  # a record of formulas, restricted as a whole
PERSON = "operator-bob-5a0c"  # a personal field
SECRET_TENSOR = "TENSOR-SECRET-93fd"  # a value sent where a number belongs
SECRET_VALUE = "VALUE-SECRET-e80f"  # an internal value that does not fit: in no error text
INPUT_MARK = 4242.4242  # an input of a model fed by a personal stream
POLICIES = {
    "telemetry": {"fields": {"operator": "personal", "recipe": "restricted"}},
    "formulas": {"classification": "restricted"},
    "readings": {"fields": {"operator": "personal"}},
}


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[LocalFleet, paho.Client, str]]:
    if not _broker_up():
        pytest.fail("Mosquitto is not running at 127.0.0.1:1883: start it (.ci/run does)")
    prefix = f"r{uuid.uuid4().hex[:10]}"
    topics = {f"{prefix}/telemetry": "telemetry", f"{prefix}/formulas": "formulas"}
    env = {
        "HYBRIDAI_EDGE_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
        "HYBRIDAI_EDGE_MQTT_TOPICS": json.dumps(topics),
        "HYBRIDAI_EDGE_MQTT_CLIENT_ID": f"hybridai-{prefix}",
    }
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-pub")
    publisher.connect(*BROKER)
    publisher.loop_start()
    with local_fleet(tmp_path / "fleet") as fleet:
        for stream, spec in POLICIES.items():
            fleet.call("PUT", f"/api/v1/policies/{stream}", json=spec)
        fleet.start_edge("edge-r", "site-r", env=env)
        fleet.wait_enrolled(1)
        wait_for(
            "the edge to apply the policies",
            lambda: sorted(fleet.edge_status("edge-r")["policies"]) == sorted(POLICIES),
            30,
        )
        yield fleet, publisher, prefix
    publisher.disconnect()
    publisher.loop_stop()


def _publish(client: paho.Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=10)
    assert info.is_published(), f"the broker did not take {topic}"


def _files_containing(paths: list[Path], needles: list[bytes]) -> list[str]:
    found = []
    for root in paths:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


def _rows(fleet: LocalFleet, sql: str) -> list[dict[str, Any]]:
    result = fleet.call("POST", "/api/v1/lake/query", json={"sql": sql})
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def test_restricted_data_stays_on_site_on_every_path(
    site: tuple[LocalFleet, paho.Client, str],
) -> None:
    fleet, mqtt, prefix = site
    edge = fleet.edges["edge-r"].url
    now = time.time()
    schema = {"fields": {"vibration": "number"}}
    fleet.call("PUT", "/api/v1/streams/telemetry/schema", json=schema)
    wait_for(
        "the edge to enforce the telemetry schema",
        lambda: fleet.edge_status("edge-r")["stream_schemas"].get("telemetry", {}).get("applied"),
        30,
    )

    # Dead letters: a misfit, an unparseable message, a misfit of a restricted stream.
    good = {"ts": now, "vibration": 1.5, "recipe": SECRET_FIELD, "operator": PERSON}

    def subscribed() -> bool:  # the same record until one arrives (repeats are de-duplicated)
        _publish(mqtt, f"{prefix}/telemetry", json.dumps(good).encode())
        return bool(fleet.edge_status("edge-r")["store"]["records_ingested"] > 0)

    wait_for("the edge to subscribe", subscribed, 30)
    misfit = {"ts": now + 1, "vibration": SECRET_VALUE, "recipe": SECRET_FIELD, "operator": PERSON}
    _publish(mqtt, f"{prefix}/telemetry", json.dumps(misfit).encode())
    _publish(mqtt, f"{prefix}/telemetry", f'{{"recipe": "{SECRET_FIELD}", '.encode())
    _publish(mqtt, f"{prefix}/formulas", json.dumps({"ts": "x", "f": SECRET_STREAM}).encode())
    wait_for(
        "3 dead letters in the lake",
        lambda: fleet.lake_count("SELECT count(*) FROM dead_letters") == 3,
        90,
    )
    letters = {
        r["topic"].rsplit("/", 1)[1] + str(r["payload"] is None): r
        for r in _rows(fleet, "SELECT * FROM dead_letters")
    }
    assert set(letters) == {"telemetryFalse", "telemetryTrue", "formulasTrue"}, letters
    redacted = json.loads(letters["telemetryFalse"]["payload"])
    assert "recipe" not in redacted and redacted["operator"].startswith("ps:")
    reason = letters["telemetryFalse"]["reason"]
    assert "must be a number, got a string" in reason and SECRET_VALUE not in reason

    # Errors name the field, never the value: at the edge, and in the cloud's audit log.
    refused = ingest(edge, "telemetry", [{"ts": now, "vibration": SECRET_VALUE}])
    assert refused.status_code == 400 and SECRET_VALUE not in refused.text
    assert "vibration" in refused.json()["error"]
    bad_tensor = infer_body(1)
    bad_tensor["inputs"][0]["data"] = [SECRET_TENSOR, 1.0, 2.0, 3.0]
    version = upload_and_deploy(fleet, train_classifier_onnx())
    assert fleet.api is not None
    answer = fleet.api.post("/v2/models/pm/infer", json=bad_tensor)
    assert answer.status_code == 400 and SECRET_TENSOR not in answer.text, answer.text

    # A model fed by a restricted stream stays on site without a hint, and never escalates.
    cascade = {"kind": "cascade", "cascade": {"measure": "margin", "threshold": 2.0}}
    restricted = {**cascade, "input_stream": "formulas"}
    fleet.call(
        "PUT",
        "/api/v1/deployments/pm",
        json={"name": "pm", "version": version, "policy": restricted},
    )
    personal_version = upload_and_deploy(fleet, train_classifier_onnx(seed=1), name="pmp")
    personal = {**cascade, "input_stream": "readings"}
    fleet.call(
        "PUT",
        "/api/v1/deployments/pmp",
        json={"name": "pmp", "version": personal_version, "policy": personal},
    )

    def cloud_refuses() -> bool:  # and the cloud will not serve it to anyone who asks directly
        assert fleet.api is not None
        direct = fleet.api.post("/v2/models/pm/infer", json=infer_body(3))
        return direct.status_code == 403 and "'formulas'" in direct.json()["error"]

    wait_for("the cloud to refuse pm", cloud_refuses, 30)

    def placed_by_policy() -> bool:
        response = httpx.post(
            f"{edge}/v2/models/pm/infer", json=infer_body(3, {"placement": "cloud"}), timeout=30
        )
        return (
            response.status_code == 200
            and response.json()["parameters"]["reason"] == "restricted_data_stays_on_site"
        )

    wait_for("pm to be placed by its input stream's policy", placed_by_policy, 60)
    before = fleet.edge_status("edge-r")["inference"]["requests_cloud"]
    for _ in range(3):
        response = httpx.post(f"{edge}/v2/models/pm/infer", json=infer_body(3), timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["parameters"]["placement"] == "edge"
        assert not response.json()["parameters"].get("escalated")
    assert fleet.edge_status("edge-r")["inference"]["requests_cloud"] == before

    # A model fed by a personal stream escalates; its hard examples carry pseudonymised inputs.
    marked = infer_body(1)
    marked["inputs"][0]["data"] = [INPUT_MARK, 60.0, 5.0, 1500.0]

    def escalated() -> bool:
        response = httpx.post(f"{edge}/v2/models/pmp/infer", json=marked, timeout=30)
        return response.status_code == 200 and bool(response.json()["parameters"].get("escalated"))

    wait_for("pmp to escalate", escalated, 60)
    wait_for(
        "its hard example in the lake",
        lambda: fleet.lake_count("SELECT count(*) FROM hard_examples") >= 1,
        60,
    )
    examples = _rows(fleet, "SELECT model, inputs, input_stream FROM hard_examples")
    assert {e["model"] for e in examples} == {"pmp"}  # none of pm: it never left the site
    assert all(str(e["inputs"]).startswith("ps:") for e in examples)

    fleet.wait_drained()
    audit = json.dumps(fleet.call("GET", "/api/v1/audit"))
    needles = [SECRET_FIELD, SECRET_STREAM, PERSON, SECRET_TENSOR, str(INPUT_MARK)]
    assert [n for n in [*needles, SECRET_VALUE] if n in audit] == []
    written = [fleet.workspace / "cloud", *fleet.workspace.glob("cloud*.log")]
    assert _files_containing(written, [n.encode() for n in needles]) == []
