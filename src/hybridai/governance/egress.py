"""What of the edge's own records may leave the site: dead letters and hard examples.

Both carry data of another stream inside one field (a dead letter the raw payload of a message
that did not fit its stream, a hard example the input tensors of a model fed by a stream), so
``redact`` over their own fields would let that data through. Here the policy of the stream the
data came from decides, before the record leaves the site (the edge keeps the original):

- a dead letter's payload is parsed and redacted record by record as its stream's records are;
  when it does not parse, or its stream is restricted as a whole, it is withheld
  (``payload_withheld``) if that stream's policy protects anything;
- a hard example of a model whose input stream holds restricted data loses its tensors
  (``tensors_withheld``); with personal data, its inputs are pseudonymised or dropped.

Pure functions, like ``governance.policies``; the uploader calls them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hybridai.governance.policies import classes_present, local_only, pseudonymise, redact
from hybridai.protocol.policy import DataClass, DataPolicy

DEAD_LETTER_STREAM = "stream"  # the dead letter's field naming the stream it was meant for
HARD_EXAMPLE_STREAM = "input_stream"  # the hard example's field naming its model's input stream
_TENSORS = ("inputs", "edge_outputs", "cloud_outputs")
_RANK: dict[DataClass, int] = {"public": 0, "internal": 1, "personal": 2, "restricted": 3}


def data_class(policy: DataPolicy | None) -> DataClass:
    """The most sensitive class of data a stream holds (its own, or any named field's)."""
    if policy is None:
        return "internal"
    return max(classes_present(policy, policy.fields), key=_RANK.__getitem__)


def strictest(a: DataClass, b: DataClass) -> DataClass:
    """The more sensitive of two classes."""
    return a if _RANK[a] >= _RANK[b] else b


def _protects(policy: DataPolicy) -> bool:
    return _RANK[data_class(policy)] >= _RANK["personal"]


def _records(text: str) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return data
    return None


def dead_letter(
    record: Mapping[str, Any], policies: Mapping[str, DataPolicy], key: bytes
) -> dict[str, Any]:
    """A dead letter as it may leave the site, per the policy of the stream it was meant for."""
    out = dict(record)
    policy = policies.get(str(record.get(DEAD_LETTER_STREAM) or ""))
    if policy is None or not _protects(policy):
        return out
    parsed = None
    if record.get("payload_encoding") == "utf-8" and not local_only(policy):
        parsed = _records(str(record.get("payload") or ""))
    if parsed is None or record.get("truncated"):
        out["payload"] = None
        out["payload_withheld"] = True
        return out
    redacted = [redact(policy, key, r) for r in parsed]
    out["payload"] = json.dumps(redacted if len(redacted) > 1 else redacted[0])
    out["payload_redacted"] = True
    return out


def hard_example(
    record: Mapping[str, Any], policies: Mapping[str, DataPolicy], key: bytes
) -> dict[str, Any]:
    """A hard example as it may leave the site, per the policy of its model's input stream."""
    out = dict(record)
    policy = policies.get(str(record.get(HARD_EXAMPLE_STREAM) or ""))
    kind = data_class(policy)
    if policy is None or kind in ("public", "internal"):
        return out
    if kind == "restricted":
        for name in _TENSORS:
            out.pop(name, None)
        out["tensors_withheld"] = True
    elif policy.personal == "drop":
        out.pop("inputs", None)
    elif "inputs" in out:
        out["inputs"] = pseudonymise(key, out["inputs"])
    return out
