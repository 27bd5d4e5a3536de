"""MQTT payloads are bounded like HTTP batches before they are parsed (dead-lettered if not)."""

from __future__ import annotations

import struct

import msgpack
import pytest

from hybridai.edge.ingest.mqtt import MalformedMessage, parse


def test_a_payload_over_the_byte_limit_is_refused_unparsed() -> None:
    payload = b'[{"ts": 1.0}' + b', {"ts": 1.0}' * 100 + b"]"
    assert len(parse(payload, max_bytes=len(payload))) == 101
    with pytest.raises(MalformedMessage, match="over the 100 an edge takes"):
        parse(payload, max_bytes=100)


def test_countless_tiny_records_are_refused_before_they_are_built() -> None:
    json_bomb = b"[" + b",".join([b"{}"] * 1001) + b"]"
    with pytest.raises(MalformedMessage, match="more than 1000 records"):
        parse(json_bomb, max_records=1000)
    packed_bomb = b"\xdd" + struct.pack(">I", 1001) + b"\x80" * 1001
    with pytest.raises(MalformedMessage, match="max_array_len"):
        parse(packed_bomb, "application/msgpack", max_records=1000)
    assert (
        len(parse(msgpack.packb([{"ts": 1.0}] * 1000), "application/msgpack", max_records=1000))
        == 1000
    )
