"""The store's de-duplication index: every kept record's 64-bit hash, in memory, sorted.

Whole batches are checked at once (``np.searchsorted`` of the batch's sorted hashes over sorted
runs) instead of one unique-index probe per row in SQLite, which is what keeps ingest near the
speed of a plain insert. The runs form a binary counter: a new batch is a run of its own, and
two neighbouring runs merge once the older is no more than twice the newer, so there are about
log2(records / batch) runs, each hash is merged that many times, and a batch is never checked
against more than a few dozen arrays (checking it against every recent batch one by one cost
more than the rest of an append). The hashes themselves are stored with each chunk, so the
index is rebuilt from disk at start and after records are deleted (retention, quota): it
always says exactly what the store holds.

Nearly every hash a producer sends is new, and a binary search of a run of millions is a
cache miss per step, so a bitmap of the hashes' top bits (8 bits per record held) answers
"certainly not held" first: only the few hashes whose bit is set (about one in eight or
fewer) are searched for. Memory: 9 bytes per record (90 MB for ten million).
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
        self._held = sum(len(run) for run in self._runs)
        self._bits = _Bitmap.holding(self._runs, self._held)

    def __len__(self) -> int:
        return self._held

    def fresh(self, hashes: Hashes, also: Iterable[Hashes] = ()) -> Mask:
        """Mask of the hashes not yet held and first of their kind within ``hashes``.

        ``also``: sorted runs to count as held too (a group's appends not yet committed).
        """
        distinct, first = np.unique(hashes, return_index=True)  # sorted: cheap searches
        held = np.zeros(len(distinct), dtype=bool)
        maybe = self._bits.maybe(distinct)
        if maybe.any():
            suspects = distinct[maybe]
            found = np.zeros(len(suspects), dtype=bool)
            for run in self._runs:
                found |= _member(run, suspects)
            held[maybe] = found
        for run in also:
            held |= _member(run, distinct)
        mask = np.zeros(len(hashes), dtype=bool)
        mask[first[~held]] = True
        return mask

    def add(self, hashes: Hashes) -> None:
        if not len(hashes):
            return
        self._runs.append(np.sort(hashes))
        self._held += len(hashes)
        runs = self._runs
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            newer = runs.pop()
            runs[-1] = np.sort(np.concatenate([runs[-1], newer]), kind="stable")
        if self._held > self._bits.capacity:
            self._bits = _Bitmap.holding(self._runs, self._held)
        else:
            self._bits.mark(hashes)


class _Bitmap:
    """One bit per top-bits prefix of a hash: clear means no held hash has that prefix."""

    MIN_BITS = 1 << 20  # 128 KiB
    BITS_PER_RECORD = 8  # at capacity, about one new hash in eight needs a search

    def __init__(self, bits: int) -> None:
        self.shift = np.uint64(64 - bits.bit_length() + 1)  # bits is a power of two
        self.capacity = bits // self.BITS_PER_RECORD
        self._bytes = np.zeros(bits // 8, dtype=np.uint8)

    @classmethod
    def holding(cls, runs: list[Hashes], held: int) -> _Bitmap:
        """A bitmap sized for twice ``held`` records, with every hash of ``runs`` marked."""
        wanted = 2 * held * cls.BITS_PER_RECORD
        bitmap = cls(max(cls.MIN_BITS, 1 << (wanted - 1).bit_length()))
        flags = np.zeros(len(bitmap._bytes) * 8, dtype=bool)
        for run in runs:
            flags[run >> bitmap.shift] = True
        bitmap._bytes = np.packbits(flags, bitorder="little")
        return bitmap

    def mark(self, hashes: Hashes) -> None:
        slots = hashes >> self.shift
        bit = np.left_shift(np.uint8(1), (slots & np.uint64(7)).astype(np.uint8))
        np.bitwise_or.at(self._bytes, slots >> np.uint64(3), bit)

    def maybe(self, hashes: Hashes) -> Mask:
        slots = hashes >> self.shift
        found = self._bytes[slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)
        return np.asarray(found & 1, dtype=bool)


def sorted_run(hashes: Hashes) -> Hashes:
    """``hashes`` as a run ``fresh`` takes in ``also``."""
    return np.sort(hashes)


def _member(ordered: Hashes, hashes: Hashes) -> Mask:
    if not len(ordered):
        return np.zeros(len(hashes), dtype=bool)
    at = np.searchsorted(ordered, hashes)
    at[at == len(ordered)] = 0
    return np.asarray(ordered[at] == hashes)
