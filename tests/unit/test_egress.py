"""Dead letters and hard examples leave the site only as the policy of their data's stream allows."""

from __future__ import annotations

import json

from hybridai.governance.egress import data_class, dead_letter, hard_example, strictest
from hybridai.protocol.policy import DataPolicy

KEY = b"k" * 32
SECRET = "RECIPE-SECRET-91"
PERSON = "alice-7f"
POLICIES = {
    "telemetry": DataPolicy(
        stream="telemetry", fields={"recipe": "restricted", "operator": "personal"}
    ),
    "formulas": DataPolicy(stream="formulas", classification="restricted"),
    "readings": DataPolicy(stream="readings", fields={"operator": "personal"}, personal="drop"),
    "plain": DataPolicy(stream="plain"),
}


def _letter(stream: str, payload: str, encoding: str = "utf-8") -> dict[str, object]:
    return {
        "ts": 1.0,
        "topic": "plant/x",
        "stream": stream,
        "reason": "schema",
        "payload": payload,
        "payload_encoding": encoding,
        "payload_bytes": len(payload),
        "truncated": False,
    }


def test_a_dead_letter_payload_is_redacted_as_its_stream_is() -> None:
    record = {"ts": 1, "recipe": SECRET, "operator": PERSON, "vibration": "high"}
    out = dead_letter(_letter("telemetry", json.dumps(record)), POLICIES, KEY)
    payload = json.loads(str(out["payload"]))
    assert "recipe" not in payload and payload["operator"].startswith("ps:")
    assert payload["vibration"] == "high" and out["payload_redacted"] is True
    many = dead_letter(_letter("telemetry", json.dumps([record, record])), POLICIES, KEY)
    assert SECRET not in str(many["payload"]) and PERSON not in str(many["payload"])


def test_a_dead_letter_that_cannot_be_redacted_is_withheld() -> None:
    broken = f'{{"recipe": "{SECRET}", '
    for letter in (
        _letter("telemetry", broken),  # does not parse: nobody can tell the fields apart
        _letter("telemetry", "AAEC", "base64"),
        _letter("formulas", json.dumps({"ts": 1, "formula": SECRET})),  # restricted stream
        {**_letter("telemetry", json.dumps({"ts": 1})), "truncated": True},
    ):
        out = dead_letter(letter, POLICIES, KEY)
        assert out["payload"] is None and out["payload_withheld"] is True
        assert out["reason"] == "schema" and out["topic"] == "plant/x"


def test_dead_letters_of_unprotected_or_unknown_streams_pass_as_they_are() -> None:
    for stream in ("plain", "unknown", ""):
        letter = _letter(stream, f'{{"x": "{SECRET}"')
        assert dead_letter(letter, POLICIES, KEY) == letter


def _example(stream: str) -> dict[str, object]:
    return {
        "model": "pm",
        "input_stream": stream,
        "inputs": '[{"name":"input","data":[4242.4242]}]',
        "edge_outputs": "[]",
        "cloud_outputs": "[]",
        "confidence": 0.1,
    }


def test_a_hard_example_obeys_its_models_input_stream() -> None:
    restricted = hard_example(_example("formulas"), POLICIES, KEY)
    assert restricted["tensors_withheld"] is True
    assert not {"inputs", "edge_outputs", "cloud_outputs"} & set(restricted)
    assert "inputs" not in hard_example(_example("telemetry"), POLICIES, KEY)  # a restricted field
    dropped = hard_example(_example("readings"), POLICIES, KEY)
    assert "inputs" not in dropped and dropped["confidence"] == 0.1
    pseudonymised = {
        **POLICIES,
        "readings": POLICIES["readings"].model_copy(update={"personal": "pseudonymise"}),
    }
    assert str(hard_example(_example("readings"), pseudonymised, KEY)["inputs"]).startswith("ps:")
    assert hard_example(_example("plain"), POLICIES, KEY) == _example("plain")
    assert hard_example(_example(""), POLICIES, KEY) == _example("")


def test_a_streams_class_is_its_most_sensitive_data() -> None:
    assert data_class(POLICIES["telemetry"]) == "restricted"
    assert data_class(POLICIES["readings"]) == "personal"
    assert data_class(POLICIES["plain"]) == "internal" and data_class(None) == "internal"
    assert strictest("public", "restricted") == "restricted"
    assert strictest("personal", "internal") == "personal"
