"""MQTT ingest: subscribe to configured topics, store what arrives, acknowledge only then.

Delivery is at-least-once and nothing acknowledged is lost: the agent subscribes with QoS 1
on a persistent session (MQTT v5, ``clean_start`` off, a session expiry of a week, a stable
client id) and sends each PUBACK itself (paho's ``manual_ack``) only after the record is on
stable storage, or parked in ``dead_letters``. A message received but not yet acknowledged when
the agent dies is redelivered by the broker when the agent reconnects; the store's content-hash
de-duplication absorbs the repeat, so the stream holds it exactly once.

Payloads: a JSON object (one record) or a JSON array of records; MessagePack when the message's
v5 Content Type property says ``application/msgpack``. A message that does not parse, or whose
records do not fit the stream's schema, goes to ``dead_letters`` with the topic, the stream, the
reason and the raw payload (which leaves the site only as that stream's data policy allows:
``governance.egress``). When the store itself fails (a full disk), the message is retried with
backoff and not acknowledged until it is stored.

paho runs the connection in its own thread and reconnects with exponential backoff.

What happens is counted (``MqttCounters``): messages in, records stored and duplicate, messages
parked by reason, store failures, and the broker link (up since, reconnects, losses, the last
error). The status report (``StatusReport.mqtt``), ``hybridai edge status`` and Prometheus
(``mqtt_metrics``) show the counts, which start again from zero when the agent restarts.
"""

from __future__ import annotations

import json
import logging
import random
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgpack
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hybridai.edge.ingest.intake import Ingest
from hybridai.edge.ingest.schemas import SchemaViolation
from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.edge_store import InvalidRecord
from hybridai.link.retry import Backoff
from hybridai.observability.supervisor import Reporter
from hybridai.protocol.fleet import MqttStats
from hybridai.protocol.policy import STREAM_PATTERN

log = logging.getLogger(__name__)
QOS = 1
SESSION_EXPIRY_S = 7 * 86400  # the broker keeps our subscription and queue through outages
KEEPALIVE_S = 30
STREAM = re.compile(STREAM_PATTERN)  # the one stream-name rule (protocol.policy)
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})


class MqttConfigError(ValueError):
    """The MQTT settings cannot work; the message says which and how to fix it."""


class MalformedMessage(ValueError):
    """A payload that is not a record or a list of records."""


# Why a message was parked in dead_letters, as counted (the full reason is in the letter).
MALFORMED, SCHEMA, INVALID_RECORD, UNROUTED = "malformed", "schema", "invalid_record", "unrouted"
DEAD_LETTER_REASONS = (MALFORMED, SCHEMA, INVALID_RECORD, UNROUTED)
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (MalformedMessage, MALFORMED),
    (SchemaViolation, SCHEMA),
    (InvalidRecord, INVALID_RECORD),
)


def _kind(exc: Exception) -> str:
    return next(kind for cls, kind in _REASONS if isinstance(exc, cls))


@dataclass
class MqttCounters:
    """Counts since the agent started; written from paho's thread, read by ``snapshot``."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    dead_lettered_by_reason: Counter[str] = field(default_factory=Counter)
    store_failures: int = 0
    connections: int = 0
    disconnects: int = 0
    connected_since: float | None = None
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> MqttStats:
        with self.lock:
            return MqttStats(
                connected=self.connected_since is not None,
                connected_since=self.connected_since,
                reconnects=max(self.connections - 1, 0),
                disconnects=self.disconnects,
                last_error=self.last_error,
                messages_received=self.received,
                records_stored=self.stored,
                records_duplicate=self.duplicates,
                messages_dead_lettered=self.dead_lettered,
                dead_lettered_by_reason={
                    kind: self.dead_lettered_by_reason[kind] for kind in DEAD_LETTER_REASONS
                },
                store_failures=self.store_failures,
            )


def route(topics: dict[str, str], topic: str) -> str | None:
    """The stream of the first topic filter (in settings order) that ``topic`` matches."""
    for pattern, stream in topics.items():
        if paho.topic_matches_sub(pattern, topic):
            return stream
    return None


def parse(
    payload: bytes,
    content_type: str | None = None,
    max_bytes: int | None = None,
    max_records: int = 1_000_000,
) -> list[dict[str, Any]]:
    """The records a message carries, or ``MalformedMessage`` saying why there are none.

    A payload is bounded like an HTTP batch before it is parsed: at most ``max_bytes``
    (``max_ingest_bytes``) and ``max_records`` records (counted by their opening braces in
    JSON; no longer array or map is built from MessagePack).
    """
    if max_bytes is not None and len(payload) > max_bytes:
        raise MalformedMessage(
            f"payload of {len(payload)} bytes is over the {max_bytes} an edge takes in one "
            "batch (HYBRIDAI_EDGE_MAX_INGEST_BYTES): publish smaller messages"
        )
    packed = (content_type or "").split(";")[0].strip().lower() in MSGPACK_TYPES
    if not packed and payload.count(b"{") > max_records:
        raise MalformedMessage(
            f"payload holds more than {max_records} records: publish smaller messages"
        )
    try:
        if packed:
            bound = max_records
            data = msgpack.unpackb(payload, raw=False, max_array_len=bound, max_map_len=bound)
        else:
            data = json.loads(payload)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        kind = "MessagePack" if content_type in MSGPACK_TYPES else "JSON"
        raise MalformedMessage(f"payload is not {kind}: {exc}") from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return data
    raise MalformedMessage(
        "payload must be a JSON object (one record) or a non-empty array of them"
    )


class MqttIngest:
    """One broker connection feeding ``Ingest``; ``start``/``stop`` from the agent."""

    def __init__(self, settings: EdgeSettings, ingest: Ingest) -> None:
        if not settings.mqtt_url:
            raise MqttConfigError("HYBRIDAI_EDGE_MQTT_URL is not set")
        url = urlsplit(settings.mqtt_url)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise MqttConfigError(
                f"MQTT URL {settings.mqtt_url!r} must look like mqtt://HOST:PORT or mqtts://HOST:PORT"
            )
        if not settings.mqtt_topics:
            raise MqttConfigError(
                "no topics to subscribe to: set HYBRIDAI_EDGE_MQTT_TOPICS, e.g. "
                '{"plant/+/telemetry": "telemetry"}'
            )
        bad = [s for s in settings.mqtt_topics.values() if not STREAM.fullmatch(s)]
        if bad:
            raise MqttConfigError(f"stream name(s) {bad} invalid: lowercase letters, digits, _")
        self.ingest = ingest
        self.topics = dict(settings.mqtt_topics)
        self._max_bytes = settings.max_ingest_bytes
        self._max_records = settings.max_ingest_records
        self.host = url.hostname
        self.port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.counters = MqttCounters()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._backoff = Backoff(base_s=0.2, max_s=10.0)
        self._rng = random.Random()
        self._report: Reporter | None = None  # how storing goes, for the agent's loop health
        client_id = settings.mqtt_client_id or f"hybridai-{settings.device_id}"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        username = settings.mqtt_username or url.username
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        if username:
            self.client.username_pw_set(username, password or url.password)
        if url.scheme == "mqtts":
            context = ssl.create_default_context(
                cafile=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
            )
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self.client.tls_set_context(context)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self, report: Reporter | None = None) -> None:
        self._report = report
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(
            self.host, self.port, keepalive=KEEPALIVE_S, clean_start=False, properties=properties
        )
        self.client.loop_start()  # a thread that connects, reconnects with backoff, dispatches

    def stats(self) -> MqttStats:
        return self.counters.snapshot()

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()

    # -- callbacks (paho's thread) -----------------------------------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning(
                "MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason
            )
            with self.counters.lock:
                self.counters.last_error = f"the broker refused the connection: {reason}"
            return
        client.subscribe([(pattern, QOS) for pattern in self.topics])
        with self.counters.lock:
            self.counters.connections += 1
            self.counters.connected_since = time.time()
        self.connected.set()
        log.info("MQTT: connected to %s:%s, subscribed to %s", self.host, self.port, self.topics)

    def _on_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        with self.counters.lock:
            self.counters.last_error = f"cannot reach the broker at {self.host}:{self.port}"

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        with self.counters.lock:
            was_up = self.counters.connected_since is not None
            self.counters.connected_since = None
            if was_up and not self._stop.is_set():
                self.counters.disconnects += 1
                self.counters.last_error = f"connection lost: {reason}"
        if not self._stop.is_set():
            log.warning(
                "MQTT: disconnected from %s:%s (%s); reconnecting", self.host, self.port, reason
            )

    def _on_message(self, client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        with self.counters.lock:
            self.counters.received += 1
        if self._store_durably(message):
            client.ack(message.mid, message.qos)

    def _store_durably(self, message: paho.MQTTMessage) -> bool:
        """Store or park the message; retry while the store fails. False only when stopping."""
        attempt = 0
        while not self._stop.is_set():
            try:
                self._handle(message)
            except Exception as exc:  # the store failed (disk full, I/O): keep it unacknowledged
                with self.counters.lock:
                    self.counters.store_failures += 1
                delay = self._backoff.delay(attempt, self._rng)
                if self._report is not None:  # its traceback once per distinct error
                    self._report.failed(exc, delay, f"storing a message from {message.topic}")
                else:
                    log.exception("MQTT: could not store a message from %s", message.topic)
                self._stop.wait(delay)
                attempt += 1
            else:
                if self._report is not None:
                    self._report.succeeded()
                return True
        return False

    def _handle(self, message: paho.MQTTMessage) -> None:
        topic = message.topic
        payload = bytes(message.payload)
        stream = route(self.topics, topic)
        if stream is None:  # a retained message on a filter we no longer hold, say
            self._park(topic, UNROUTED, "no stream is mapped to this topic", payload)
            return
        content_type = getattr(message.properties, "ContentType", None)
        try:
            records = parse(payload, content_type, self._max_bytes, self._max_records)
            result = self.ingest.write(stream, records)
        except (MalformedMessage, SchemaViolation, InvalidRecord) as exc:
            self._park(topic, _kind(exc), str(exc), payload, stream)
            return
        with self.counters.lock:
            self.counters.stored += result.accepted
            self.counters.duplicates += result.duplicates

    def _park(
        self, topic: str, kind: str, reason: str, payload: bytes, stream: str | None = None
    ) -> None:
        self.ingest.dead_letter(topic, reason, payload, stream)
        with self.counters.lock:
            self.counters.dead_lettered += 1
            self.counters.dead_lettered_by_reason[kind] += 1
        log.warning("MQTT: message on %s parked in dead_letters: %s", topic, reason)
