"""Data policies applied to records: classification, redaction, pseudonymisation, retention.

Pure functions over plain records (``dict`` of field -> value) and ``DataPolicy``; the edge calls
them on every batch before it leaves the site, the cloud to plan lake retention.

Pseudonymisation is a keyed hash: ``HMAC-SHA256(site_key, canonical JSON of the value)``, shown
as ``"ps:" + 32 hex digits`` (128 bits). The key is generated and kept at the edge (one file per
device, which operators may share among the devices of one site so that pseudonyms agree
across them); the cloud never holds it, so it cannot reverse a pseudonym by hashing guesses.
Equal values map to equal pseudonyms under one key, so joins and counts still work in the lake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from hybridai.protocol.policy import DATA_CLASSES, DataClass, DataPolicy

PSEUDONYM_PREFIX = "ps:"
_RANK = {c: i for i, c in enumerate(DATA_CLASSES)}
Where = Literal["edge", "lake"]


def field_class(policy: DataPolicy, field: str) -> DataClass:
    """A field's class: its own if named, else the default but never below the stream's.

    So a 'personal' stream keeps its unnamed fields personal.
    """
    if field in policy.fields:
        return policy.fields[field]
    default = policy.default_class
    return default if _RANK[default] >= _RANK[policy.classification] else policy.classification


def local_only(policy: DataPolicy | None) -> bool:
    """Whether the stream must never leave the site (classified restricted as a whole)."""
    return policy is not None and policy.classification == "restricted"


def pseudonymise(key: bytes, value: Any) -> str | None:
    """The keyed pseudonym of ``value`` (None stays None)."""
    if value is None:
        return None
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def redact(policy: DataPolicy | None, key: bytes, record: Mapping[str, Any]) -> dict[str, Any]:
    """What of ``record`` may leave the site, per policy; without one, all of it.

    Restricted fields are dropped; personal ones are pseudonymised or dropped.

    Raises ValueError for a stream that must stay local: callers never send those at all.
    """
    if policy is None:
        return dict(record)
    if local_only(policy):
        raise ValueError(f"stream {policy.stream!r} is restricted: it never leaves the site")
    out: dict[str, Any] = {}
    for field, value in record.items():
        data_class = field_class(policy, field)
        if data_class == "restricted":
            continue
        if data_class == "personal":
            if policy.personal == "drop":
                continue
            out[field] = pseudonymise(key, value)
        else:
            out[field] = value
    return out


def classes_present(policy: DataPolicy, fields: Iterable[str]) -> set[DataClass]:
    """The classes of data a stream holds: its own class and its fields' classes."""
    return {policy.classification} | {field_class(policy, f) for f in fields}


def retention_s(
    policy: DataPolicy | None, where: Where, fields: Iterable[str] = ()
) -> float | None:
    """How long records of this stream are kept ``where``, in seconds; None: for ever.

    A record is kept for the shortest period among the classes of data it holds (the
    stream's own class, the classes of its named fields and of ``fields``), so the most
    sensitive content sets the pace.
    """
    if policy is None:
        return None
    days = policy.edge_retention_days if where == "edge" else policy.lake_retention_days
    present = classes_present(policy, [*policy.fields, *fields])
    periods = [days[c] for c in present if c in days]
    return min(periods) * 86400.0 if periods else None


def load_or_create_site_key(path: Path) -> bytes:
    """The pseudonymisation key at ``path`` (hex text); 32 random bytes, mode 0600, if absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_site_key(path)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path} must hold the pseudonymisation key as hex") from None
    if len(key) < 16:
        raise ValueError(f"{path}: the pseudonymisation key must be at least 16 bytes")
    return key
