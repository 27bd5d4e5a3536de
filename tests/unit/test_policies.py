"""Data policies as pure functions: classification, redaction, pseudonyms, retention."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hybridai.governance.policies import (
    field_class,
    load_or_create_site_key,
    local_only,
    pseudonymise,
    redact,
    retention_s,
)
from hybridai.protocol.policy import DataPolicy

KEY = b"k" * 32


def policy(**spec: Any) -> DataPolicy:
    return DataPolicy.model_validate({"stream": "telemetry", **spec})


def test_restricted_fields_are_dropped_and_personal_ones_pseudonymised() -> None:
    p = policy(fields={"operator": "personal", "recipe": "restricted", "temp": "public"})
    out = redact(p, KEY, {"operator": "alice", "recipe": "SECRET", "temp": 60.5, "rpm": 1500})
    assert out == {"operator": pseudonymise(KEY, "alice"), "temp": 60.5, "rpm": 1500}
    assert "alice" not in str(out) and "SECRET" not in str(out)


def test_personal_fields_can_be_dropped_instead() -> None:
    p = policy(fields={"operator": "personal"}, personal="drop")
    assert redact(p, KEY, {"operator": "alice", "temp": 1}) == {"temp": 1}


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    assert pseudonymise(KEY, "alice") == pseudonymise(KEY, "alice")
    assert pseudonymise(KEY, "alice") != pseudonymise(KEY, "bob")
    assert pseudonymise(KEY, "alice") != pseudonymise(b"j" * 32, "alice")
    assert pseudonymise(KEY, 1) != pseudonymise(KEY, "1")  # types are part of the value
    assert pseudonymise(KEY, None) is None


def test_without_a_policy_records_pass_unchanged() -> None:
    assert redact(None, KEY, {"a": 1}) == {"a": 1}


def test_a_restricted_stream_never_leaves() -> None:
    p = policy(classification="restricted")
    assert local_only(p) and not local_only(policy()) and not local_only(None)
    with pytest.raises(ValueError, match="never leaves"):
        redact(p, KEY, {"a": 1})


def test_unnamed_fields_never_rank_below_the_stream() -> None:
    p = policy(classification="personal", fields={"temp": "public"})
    assert field_class(p, "anything") == "personal"
    assert field_class(p, "temp") == "public"


def test_retention_takes_the_shortest_period_of_the_classes_present() -> None:
    p = policy(
        fields={"operator": "personal"},
        edge_retention_days={"internal": 30, "personal": 7},
        lake_retention_days={"restricted": 1},
    )
    assert retention_s(p, "edge") == 7 * 86400
    assert retention_s(p, "lake") is None  # no restricted data in this stream
    assert retention_s(None, "edge") is None


@pytest.mark.parametrize(
    "spec",
    [
        {"fields": {"x": "secret"}},
        {"classification": "top"},
        {"edge_retention_days": {"personal": 0}},
        {"fields": {"../etc": "public"}},
        {"personal": "encrypt"},
    ],
)
def test_bad_policies_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        policy(**spec)


def test_site_key_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    key = load_or_create_site_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_site_key(path) == key
