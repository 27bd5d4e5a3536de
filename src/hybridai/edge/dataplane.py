"""The agent's data-plane rules: the store's config and the sync gates, kept current.

The edge settings give the defaults; the cloud's desired state ``settings`` (typed:
``protocol.edge_settings.DeviceSettings``) override them (see ``store.config.build_config``).
Settings that cannot be applied leave the last good rules in force and say why (``error``),
rather than stop the store.
"""

from __future__ import annotations

import logging
from typing import Any

from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.config import StoreConfigError, build_config
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.sync.window import SyncWindow, parse_window
from hybridai.protocol.edge_settings import EdgeConfig

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
    def __init__(self, settings: EdgeSettings, store: EdgeStore) -> None:
        self._base = {key: getattr(settings, key) for key in _KEYS}
        self._store = store
        self._applied: dict[str, Any] | None = None
        self.window: SyncWindow | None = None
        self.bandwidth: float | None = None
        self.error: str | None = None
        self.apply(None)

    def apply(self, desired: EdgeConfig | None) -> bool:
        """Bring the store and gates in line with ``desired`` (None: the edge's own settings).

        True when something changed; False when nothing did or it could not be applied.
        """
        over = {} if desired is None else desired.model_dump(mode="json", include=set(_KEYS))
        if over == self._applied:
            return False
        merged = {**self._base, **over}
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
