"""Group commit: writers that arrive together share one durable write, each still waits for it.

Every ingest caller (an HTTP request's worker thread, the MQTT thread) hands its batch to
``GroupCommit.submit`` and blocks. The first in line becomes the leader: it takes every batch
queued by then (its own first), writes them with one call of ``commit`` (one transaction, one
fsync) and hands each waiter its own outcome; batches that arrived meanwhile wait for the next
leader, one of their own. So a caller returns only once its batch is durable (or has failed
on its own), concurrent callers pay one fsync between them instead of one each, and a lone
caller pays nothing more than before: there is no timer and no background thread.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Waiter(Generic[T, R]):
    __slots__ = ("done", "item", "outcome")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.outcome: R | BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Runs ``commit`` over groups of submitted items, one group at a time, in arrival order.

    ``commit`` returns one outcome per item (its result, or the exception for that item alone);
    if it raises, every item of the group fails with that exception.
    """

    def __init__(
        self, commit: Callable[[list[T]], Sequence[R | BaseException]], max_group: int = 64
    ) -> None:
        self._commit = commit
        self._max_group = max_group
        self._ready = threading.Condition()
        self._queue: deque[_Waiter[T, R]] = deque()

    def submit(self, item: T) -> R:
        """``item``'s result once it is durable, or its exception."""
        waiter: _Waiter[T, R] = _Waiter(item)
        group: list[_Waiter[T, R]] = []
        with self._ready:
            self._queue.append(waiter)
            while not waiter.done and self._queue[0] is not waiter:
                self._ready.wait()
            if not waiter.done:  # at the head of the line: lead the group queued behind it
                group = list(itertools.islice(self._queue, self._max_group))
        if group:
            self._lead(group)
        outcome = waiter.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    def _lead(self, group: list[_Waiter[T, R]]) -> None:
        try:
            outcomes: Sequence[R | BaseException] = self._commit([w.item for w in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"commit answered {len(outcomes)} of {len(group)} items")
        except BaseException as exc:  # the whole group failed: each waiter hears why
            outcomes = [exc] * len(group)
        with self._ready:
            for waiter, outcome in zip(group, outcomes, strict=True):
                self._queue.popleft()  # the group is the head of the line
                waiter.outcome, waiter.done = outcome, True
            self._ready.notify_all()
