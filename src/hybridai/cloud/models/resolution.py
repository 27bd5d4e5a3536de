"""What a model name serves, remembered between requests: no database session per request.

An unversioned v2 request runs the model's deployed version (or its latest), under its
deployment's policy (batching, runtime options), and is refused when its input stream holds
restricted data. Reading that takes a database session; a busy model answers thousands of
requests a second, so ``Resolutions`` keeps each name's answer for ``TTL_S`` and forgets every
answer at once when this process commits a change that could alter one (``registry_watch``: a
deployment, a version or its stage, a data policy), whoever made it: the API, a rollout's
promotion or rollback, a retraining run. The next request after a promotion made here runs the
new version; another replica's change is seen within ``TTL_S``. A model's remote tier is not
kept here: ``remote_tier.RemoteTiers`` holds it (this process's changes at once, other
replicas' within its reload period).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from hybridai.protocol.placement import PlacementPolicy
from hybridai.storage.watch import TableWatch

__all__ = ["TTL_S", "WATCHED_TABLES", "Resolution", "Resolutions", "registry_watch"]

TTL_S = 1.0  # how stale another replica's change may be seen here
WATCHED_TABLES = frozenset({"models", "model_versions", "deployments", "data_policies"})


@dataclass(frozen=True)
class Resolution:
    """A model name as its unversioned requests see it."""

    version: str | None  # None: the name is not in the registry
    policy: PlacementPolicy | None  # its deployment's, if deployed with one
    restricted_stream: str | None  # its input stream, when that holds restricted data


def registry_watch(sessions: sessionmaker[Session]) -> TableWatch:
    """A watch over the tables a model name's resolution is read from."""
    return TableWatch(sessions, WATCHED_TABLES)


class Resolutions:
    """Each name's ``Resolution``, loaded by ``load`` (a database read) at most once per TTL.

    ``fresh`` never blocks (the event loop may call it); ``resolve`` may read the store, so
    call it off the loop.
    """

    def __init__(
        self,
        load: Callable[[str], Resolution],
        watch: TableWatch,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._watch, self._ttl_s, self._clock = load, watch, ttl_s, clock
        self._kept: dict[str, tuple[float, int, Resolution]] = {}  # name -> (until, gen, it)
        self._lock = threading.Lock()

    def fresh(self, name: str) -> Resolution | None:
        kept = self._kept.get(name)
        if kept is None or kept[1] != self._watch.generation or kept[0] < self._clock():
            return None
        return kept[2]

    def resolve(self, name: str) -> Resolution:
        found = self.fresh(name)
        if found is not None:
            return found
        with self._lock:  # one reader per burst, not one per waiting request
            found = self.fresh(name)
            if found is not None:
                return found
            generation, started = self._watch.generation, self._clock()
            found = self._load(name)
            self._kept[name] = (started + self._ttl_s, generation, found)
            return found
