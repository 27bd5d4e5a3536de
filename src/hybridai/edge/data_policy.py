"""The edge's side of the data policies: its keys, local-only streams and retention.

Policies arrive in the desired state (the agent hands over the current ones); the uploader
redacts batches with them (``hybridai.edge.sync.uploader``); this module runs retention and says
what status reports show. The pseudonymisation key stays on the device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.crypto import load_store_key
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.governance.policies import load_or_create_site_key, local_only, retention_s
from hybridai.link.signing import TrustedKey, read_public_key_file
from hybridai.protocol.fleet import StoreStats
from hybridai.protocol.policy import DataPolicy

log = logging.getLogger(__name__)


def store_key(settings: EdgeSettings) -> bytes | None:
    """The store encryption key from the settings; None leaves encryption off."""
    text = settings.store_key.get_secret_value() if settings.store_key else None
    return load_store_key(settings.store_key_file, text)


def trusted_key(settings: EdgeSettings) -> TrustedKey:
    """The model signing key: provisioned from a file, or pinned on first use."""
    fixed = read_public_key_file(settings.signing_key_file) if settings.signing_key_file else None
    return TrustedKey(settings.data_dir / "models" / "trusted-signing-key.pub", fixed)


class EdgeDataPolicy:
    """Policies as the edge applies them: retention, local-only streams, status figures."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: EdgeStore,
        policies: Callable[[], Mapping[str, DataPolicy]],
    ) -> None:
        self._store = store
        self._policies = policies
        key_path: Path = settings.pseudonym_key_file or settings.data_dir / "pseudonym.key"
        self.site_key = load_or_create_site_key(key_path)
        self.retention_overdue = 0

    def policies(self) -> dict[str, DataPolicy]:
        return dict(self._policies())

    def local_only(self) -> frozenset[str]:
        return frozenset(d for d, p in self.policies().items() if local_only(p))

    def expire(self, now: float) -> tuple[int, int]:
        """One retention pass over every stream with an edge retention period."""
        deleted = overdue = 0
        for stream, policy in self.policies().items():
            period = retention_s(policy, "edge")
            if period is None:
                continue
            gone, late = self._store.expire(stream, now - period, local_only(policy))
            deleted, overdue = deleted + gone, overdue + late
        if overdue:
            log.warning("%d unsynced records are past their retention period; kept", overdue)
        self.retention_overdue = overdue
        return deleted, overdue

    async def expire_step(self) -> None:
        await asyncio.to_thread(self.expire, time.time())

    def stats(self) -> StoreStats:
        stats = self._store.stats(local_only=self.local_only())
        return stats.model_copy(update={"retention_overdue": self.retention_overdue})
