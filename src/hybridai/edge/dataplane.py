"""The agent's data-plane rules: the store's config and the sync gates, kept current.

The edge settings give the defaults; the cloud's desired state ``settings`` override them (see
``store_config``). A desired state whose data-plane settings cannot be applied leaves the last
good rules in force and says why (``error``), rather than stop the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.config import StoreConfigError, build_config
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.sync.window import SyncWindow, parse_window

log = logging.getLogger(__name__)
_KEYS = (
    "stream_priorities",
    "stream_compression",
    "store_quota_bytes",
    "batch_max_bytes",
    "batch_max_wait_s",
    "sync_bandwidth_bytes_per_s",
    "sync_window",
)


class DataPlane:
    def __init__(
        self, settings: EdgeSettings, store: EdgeStore, desired: Callable[[], Mapping[str, Any]]
    ) -> None:
        self._base = {key: getattr(settings, key) for key in _KEYS}
        self._store = store
        self._desired = desired
        self._applied: dict[str, Any] | None = None
        self.window: SyncWindow | None = None
        self.bandwidth: float | None = None
        self.error: str | None = None
        self.apply()

    def apply(self) -> bool:
        """Bring the store and gates in line with the settings; True when something changed."""
        over = {k: v for k, v in self._desired().items() if k in _KEYS}
        if over == self._applied:
            return False
        merged = {**self._base, **{k: v for k, v in over.items() if v is not None}}
        try:
            config = build_config(self._base, over)
            window = parse_window(merged.get("sync_window"))
            rate = merged.get("sync_bandwidth_bytes_per_s")
            if rate is not None and (not isinstance(rate, int | float) or rate <= 0):
                raise StoreConfigError(f"sync_bandwidth_bytes_per_s = {rate!r}: give bytes/s > 0")
        except (StoreConfigError, ValueError) as exc:
            if self.error != str(exc):
                log.error("data-plane settings not applied: %s", exc)
            self.error = str(exc)
            return False
        self._store.configure(config)
        self.window = window
        self.bandwidth = None if rate is None else float(rate)
        self._applied = over
        self.error = None
        return True
