"""How the edge store treats each stream: priority class, compression, quota, batch timing.

Declared in the edge settings and overridden by the cloud's desired state ``settings`` (keys
``stream_priorities``, ``stream_compression``, ``store_quota_bytes``, ``batch_max_bytes``,
``batch_max_wait_s``, ``sync_bandwidth_bytes_per_s``, ``sync_window``), so an operator can
retune a whole fleet without touching a device. Priority classes, highest first:

- ``high``: sent first, never waits for a batch to fill, never evicted while unsynced.
  Default for ``alerts``, ``failures`` and ``hard_examples``.
- ``normal``: everything not named (inference results, dead letters, ...).
- ``low``: raw telemetry (default for ``telemetry``): sent last, evicted first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hybridai.edge.store.compression import CompressionSpec, parse_compression

HIGH, NORMAL, LOW = 2, 1, 0
PRIORITIES: dict[str, int] = {"high": HIGH, "normal": NORMAL, "low": LOW}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
DEFAULT_PRIORITIES: dict[str, str] = {
    "alerts": "high",
    "failures": "high",
    "hard_examples": "high",
    "telemetry": "low",
}


class StoreConfigError(ValueError):
    """A data-plane setting that cannot be applied; the message says which and why."""


@dataclass(frozen=True)
class StoreConfig:
    """The store's per-stream rules; immutable, replaced whole by ``EdgeStore.configure``."""

    priorities: Mapping[str, int] = field(
        default_factory=lambda: {s: PRIORITIES[p] for s, p in DEFAULT_PRIORITIES.items()}
    )
    compression: Mapping[str, CompressionSpec] = field(default_factory=dict)
    quota_bytes: int | None = None
    batch_max_bytes: int = 4_000_000
    batch_max_wait_s: float = 0.0  # a normal/low batch waits at most this long to fill

    def priority(self, stream: str) -> int:
        return self.priorities.get(stream, NORMAL)


def parse_priorities(raw: Mapping[str, Any]) -> dict[str, int]:
    """``{"alerts": "high", "telemetry": "low"}`` (or 0..2) over the defaults."""
    merged: dict[str, int] = {s: PRIORITIES[p] for s, p in DEFAULT_PRIORITIES.items()}
    for stream, value in raw.items():
        if isinstance(value, str) and value in PRIORITIES:
            merged[stream] = PRIORITIES[value]
        elif isinstance(value, int) and not isinstance(value, bool) and value in PRIORITY_NAMES:
            merged[stream] = value
        else:
            raise StoreConfigError(
                f"stream_priorities[{stream!r}] = {value!r}: use high, normal or low"
            )
    return merged


def build_config(
    base: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> StoreConfig:
    """Combine the edge's own settings (``base``) with the desired state's (``overrides``).

    Per-stream maps merge stream by stream (the desired state wins); scalars are replaced.
    """
    over = dict(overrides or {})
    priorities = {**dict(base.get("stream_priorities") or {})}
    priorities.update(dict(over.get("stream_priorities") or {}))
    compression = {**dict(base.get("stream_compression") or {})}
    compression.update(dict(over.get("stream_compression") or {}))

    def scalar(key: str, default: Any) -> Any:
        value = over.get(key, base.get(key))
        return default if value is None else value

    quota = scalar("store_quota_bytes", None)
    max_bytes = scalar("batch_max_bytes", 4_000_000)
    max_wait = scalar("batch_max_wait_s", 0.0)
    if quota is not None and (not isinstance(quota, int) or quota < 1):
        raise StoreConfigError(f"store_quota_bytes = {quota!r}: give a positive byte count")
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise StoreConfigError(f"batch_max_bytes = {max_bytes!r}: give a positive byte count")
    if not isinstance(max_wait, int | float) or max_wait < 0:
        raise StoreConfigError(f"batch_max_wait_s = {max_wait!r}: give seconds >= 0")
    return StoreConfig(
        priorities=parse_priorities(priorities),
        compression={s: parse_compression(s, spec) for s, spec in compression.items()},
        quota_bytes=quota,
        batch_max_bytes=max_bytes,
        batch_max_wait_s=float(max_wait),
    )
