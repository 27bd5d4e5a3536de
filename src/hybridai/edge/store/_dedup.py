"""The store's de-duplication index: every kept record's 64-bit hash, in memory, sorted.

Whole batches are checked at once (``np.searchsorted`` of the batch's sorted hashes over sorted
runs) instead of one unique-index probe per row in SQLite, which is what keeps ingest near the
speed of a plain insert. The runs form a binary counter: a new batch is a run of its own, and
two neighbouring runs merge once the older is no more than twice the newer, so there are about
log2(records / batch) runs, each hash is merged that many times, and a batch is never checked
against more than a few dozen arrays (checking it against every recent batch one by one cost
more than the rest of an append). The hashes themselves are stored with each chunk, so the
index is rebuilt from disk at start and after records are deleted (retention, quota): it
always says exactly what the store holds. Memory: 8 bytes per record (80 MB for ten million).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

Hashes = np.ndarray[Any, np.dtype[np.uint64]]
Mask = np.ndarray[Any, np.dtype[np.bool_]]


class HashIndex:
    def __init__(self, hashes: Iterable[Hashes] = ()) -> None:
        parts = [p for p in hashes if len(p)]
        self._runs: list[Hashes] = [np.sort(np.concatenate(parts))] if parts else []

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def fresh(self, hashes: Hashes, also: Iterable[Hashes] = ()) -> Mask:
        """Mask of the hashes not yet held and first of their kind within ``hashes``.

        ``also``: sorted runs to count as held too (a group's appends not yet committed).
        """
        distinct, first = np.unique(hashes, return_index=True)  # sorted: cheap searches
        held = np.zeros(len(distinct), dtype=bool)
        for run in (*self._runs, *also):
            held |= _member(run, distinct)
        mask = np.zeros(len(hashes), dtype=bool)
        mask[first[~held]] = True
        return mask

    def add(self, hashes: Hashes) -> None:
        if not len(hashes):
            return
        self._runs.append(np.sort(hashes))
        runs = self._runs
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            newer = runs.pop()
            runs[-1] = np.sort(np.concatenate([runs[-1], newer]), kind="stable")


def sorted_run(hashes: Hashes) -> Hashes:
    """``hashes`` as a run ``fresh`` takes in ``also``."""
    return np.sort(hashes)


def _member(ordered: Hashes, hashes: Hashes) -> Mask:
    if not len(ordered):
        return np.zeros(len(hashes), dtype=bool)
    at = np.searchsorted(ordered, hashes)
    at[at == len(ordered)] = 0
    return np.asarray(ordered[at] == hashes)
