"""MQTT ingest against the real Mosquitto: routing, exactly once, dead letters, kill -9, counters.

Needs a broker at 127.0.0.1:1883 (``.ci/run`` starts one); skipped without one, failed under
``CI=true``. Each test uses its own topic prefix and client ids, and clears its broker sessions.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from hybridai.cli.main import app as cli
from hybridai.demo.fleet import wait_for
from hybridai.demo.lone_edge import LoneEdge
from hybridai.edge.ingest.mqtt import MalformedMessage, parse, route
from hybridai.edge.store.edge_store import EdgeStore, StoredRecord

BROKER = ("127.0.0.1", 1883)


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def broker() -> None:
    if not _broker_up():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Mosquitto is not running at 127.0.0.1:1883 (CI=true: start it)")
        pytest.skip("no MQTT broker at 127.0.0.1:1883")


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    _forget_session(f"hybridai-{name}")


def _forget_session(client_id: str) -> None:
    """Connect clean with no expiry: the broker drops the session the test left behind."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    try:
        client.connect(*BROKER, clean_start=True)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


class Publisher:
    """A QoS 1 producer; ``publish`` returns once the broker acknowledged (PUBACK)."""

    def __init__(self, client_id: str) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.connect(*BROKER)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, content_type: str | None = None) -> None:
        properties = None
        if content_type:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ContentType = content_type
        info = self.client.publish(topic, payload, qos=1, properties=properties)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"broker did not acknowledge {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _edge(workspace: Path, prefix: str) -> LoneEdge:
    topics = {
        f"{prefix}/probe": "probe",
        f"{prefix}/+/telemetry": "telemetry",
        f"{prefix}/alerts/#": "alerts",
    }
    return LoneEdge(
        workspace,
        {
            "HYBRIDAI_EDGE_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}",
            "HYBRIDAI_EDGE_MQTT_TOPICS": json.dumps(topics),
            "HYBRIDAI_EDGE_MQTT_CLIENT_ID": f"hybridai-{prefix}",
        },
    )


def _subscribed(edge: LoneEdge, publisher: Publisher, prefix: str) -> None:
    """Wait until the agent's subscription holds: a probe record arrives."""
    n = 0

    def arrived() -> bool:
        nonlocal n
        n += 1
        publisher.publish(f"{prefix}/probe", json.dumps({"ts": float(n)}).encode())
        time.sleep(0.2)
        return bool(edge.status()["store"]["records_ingested"])

    wait_for("the agent to subscribe", arrived, 30, every_s=0.1)


def _stored(data_dir: Path) -> dict[str, list[StoredRecord]]:
    """Every record in a stopped agent's store, by stream (read through its public API)."""
    found: dict[str, list[StoredRecord]] = {}
    with EdgeStore(data_dir / "store.db") as store:
        while (batch := store.next_batch(max_records=100_000)) is not None:
            found.setdefault(batch.stream, []).extend(batch.records)
            store.mark_synced(batch.seq, 0)
    return found


def _record(i: int, machine: str = "m1") -> dict[str, Any]:
    return {"ts": 1_720_000_000.0 + i, "machine_id": machine, "vibration": 1.0 + i / 100}


def test_payloads_parse_to_records_or_say_why_not() -> None:
    assert parse(b'{"ts": 1, "a": 2}') == [{"ts": 1, "a": 2}]
    assert parse(b'[{"ts": 1}, {"ts": 2}]') == [{"ts": 1}, {"ts": 2}]
    packed = msgpack.packb([{"ts": 1.5, "a": "x"}])
    assert parse(packed, "application/msgpack") == [{"ts": 1.5, "a": "x"}]
    for bad in (b"not json", b"42", b"[]", b'[{"ts": 1}, 3]', b"\xff\xfe", packed):
        with pytest.raises(MalformedMessage):
            parse(bad)
    topics = {"plant/+/telemetry": "telemetry", "plant/#": "other"}
    assert route(topics, "plant/a/telemetry") == "telemetry"
    assert route(topics, "plant/a/b/telemetry") == "other"
    assert route(topics, "elsewhere") is None


@pytest.mark.slow
def test_messages_land_in_their_streams_once_and_misfits_in_dead_letters(
    broker: None, prefix: str, tmp_path: Path
) -> None:
    edge = _edge(tmp_path, prefix)
    publisher = Publisher(f"{prefix}-pub")
    with edge:
        _subscribed(edge, publisher, prefix)
        probes = edge.status()["store"]["records_ingested"]
        singles = [_record(i, "m1") for i in range(20)]
        for record in singles:
            body = json.dumps(record).encode()
            publisher.publish(f"{prefix}/m1/telemetry", body)
            publisher.publish(f"{prefix}/m1/telemetry", body)  # a producer's retry: kept once
        batch = [_record(i, "m2") for i in range(100, 130)]
        publisher.publish(
            f"{prefix}/m2/telemetry", msgpack.packb(batch), content_type="application/msgpack"
        )
        publisher.publish(f"{prefix}/alerts/m1/hot", json.dumps({"ts": 5.0, "level": 3}).encode())
        misfits = {
            b"this is not json": "not JSON",
            b"\xff\xfe\xfd": "not JSON",
            json.dumps({"ts": 9.0, "machine_id": "m1", "vibration": "loud"}).encode(): "vibration",
            json.dumps({"machine_id": "m1"}).encode(): "ts",
            b"17": "object",
        }
        for payload in misfits:
            publisher.publish(f"{prefix}/m3/telemetry", payload)
        expected = probes + len(singles) + len(batch) + 1 + len(misfits)
        wait_for(
            "every message stored",
            lambda: edge.status()["store"]["records_ingested"] >= expected,
            30,
        )
        edge.stop()
    publisher.close()

    stored = _stored(edge.data_dir)
    telemetry = sorted((r.ts, r.payload["machine_id"]) for r in stored["telemetry"])
    assert telemetry == sorted((r["ts"], r["machine_id"]) for r in singles + batch)
    assert [r.payload for r in stored["alerts"]] == [{"level": 3}]
    letters = {r.payload["payload"]: r.payload for r in stored["dead_letters"]}
    assert len(letters) == len(misfits)
    for payload, why in misfits.items():
        text = payload.decode("utf-8", errors="replace")
        letter = letters.get(text) or next(
            v for v in letters.values() if v["payload_encoding"] == "base64"
        )
        assert letter["topic"] == f"{prefix}/m3/telemetry"
        assert why in letter["reason"], (payload, letter["reason"])


@pytest.mark.slow
def test_kill_9_in_flight_loses_no_acknowledged_message(
    broker: None, prefix: str, tmp_path: Path
) -> None:
    """Every message the broker acknowledged to the producer is stored once, kill -9 or not."""
    edge = _edge(tmp_path, prefix)
    publisher = Publisher(f"{prefix}-pub")
    total = 600
    published: list[dict[str, Any]] = []

    def produce() -> None:
        for i in range(total):
            record = _record(i)
            publisher.publish(f"{prefix}/m1/telemetry", json.dumps(record).encode())
            published.append(record)  # the broker holds it now (PUBACK received)
            time.sleep(0.002)

    with edge:
        _subscribed(edge, publisher, prefix)
        probes = edge.status()["store"]["records_ingested"]
        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(
            "ingest under way",
            lambda: edge.status()["store"]["records_ingested"] >= probes + 100,
            30,
            every_s=0.02,
        )
        edge.kill()  # mid-stream: messages delivered to the agent but not yet acknowledged
        time.sleep(0.5)  # the broker queues for the persistent session meanwhile
        edge.start()
        producer.join(60)
        assert len(published) == total
        wait_for(
            "the backlog redelivered",
            lambda: edge.status()["store"]["records_ingested"] >= probes + total,
            60,
        )
        edge.stop()
    publisher.close()

    stored = _stored(edge.data_dir)["telemetry"]
    assert len(stored) == total
    assert sorted(r.ts for r in stored) == [r["ts"] for r in published]


def _metric(text: str, sample: str) -> float:
    """One sample's value from a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            if (f"{s.name}{{{labels}}}" if labels else s.name) == sample:
                return float(s.value)
    return 0.0


@pytest.mark.slow
def test_ingest_counters_show_in_status_metrics_and_the_cli(
    broker: None, prefix: str, tmp_path: Path
) -> None:
    """A good record, its duplicate, a misfit and garbage each move their own counter."""
    edge = _edge(tmp_path, prefix)
    publisher = Publisher(f"{prefix}-pub")
    with edge:
        _subscribed(edge, publisher, prefix)
        before = edge.status()["mqtt"]
        assert before["connected"] and before["connected_since"] is not None
        assert before["reconnects"] == 0 and before["last_error"] is None
        topic = f"{prefix}/m1/telemetry"
        good = json.dumps(_record(1)).encode()
        publisher.publish(topic, good)
        publisher.publish(topic, good)  # the same content again: a duplicate, stored once
        misfit = {"ts": 2.0, "machine_id": "m1", "vibration": "loud"}
        publisher.publish(topic, json.dumps(misfit).encode())  # parked: schema
        publisher.publish(topic, b"not json at all")  # parked: malformed
        wait_for(
            "four messages handled",
            lambda: edge.status()["mqtt"]["messages_received"] >= before["messages_received"] + 4,
            30,
        )
        after = edge.status()["mqtt"]
        moved = {
            key: after[key] - before[key]
            for key in (
                "messages_received",
                "records_stored",
                "records_duplicate",
                "messages_dead_lettered",
            )
        }
        assert moved == {
            "messages_received": 4,
            "records_stored": 1,
            "records_duplicate": 1,
            "messages_dead_lettered": 2,
        }
        parked = after["dead_lettered_by_reason"]
        assert parked == {"malformed": 1, "schema": 1, "invalid_record": 0, "unrouted": 0}

        metrics = httpx.get(f"{edge.url}/metrics", timeout=10).text
        assert _metric(metrics, "hybridai_edge_mqtt_messages_received_total") == float(
            after["messages_received"]
        )
        assert _metric(metrics, "hybridai_edge_mqtt_records_duplicate_total") == 1.0
        assert (
            _metric(metrics, 'hybridai_edge_mqtt_messages_dead_lettered_total{reason="schema"}')
            == 1.0
        )
        assert _metric(metrics, "hybridai_edge_mqtt_connected") == 1.0

        shown = CliRunner().invoke(cli, ["edge", "status", "--url", edge.url, "--json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["mqtt"]["dead_lettered_by_reason"] == parked
        table = CliRunner().invoke(cli, ["edge", "status", "--url", edge.url])
        assert table.exit_code == 0, table.output
        assert "mqtt ingest" in table.output and "malformed 1, schema 1" in table.output

        # Another client taking the agent's client id kicks it off the broker: it reconnects.
        _forget_session(f"hybridai-{prefix}")
        wait_for(
            "the agent to reconnect",
            lambda: (m := edge.status()["mqtt"])["reconnects"] >= 1 and m["connected"],
            30,
        )
        kicked = edge.status()["mqtt"]
        assert kicked["disconnects"] >= 1 and "connection lost" in (kicked["last_error"] or "")
        publisher.publish(topic, json.dumps(_record(2)).encode())
        wait_for(
            "a record after the reconnect",
            lambda: edge.status()["mqtt"]["records_stored"] == after["records_stored"] + 1,
            30,
        )
        edge.stop()
    publisher.close()
