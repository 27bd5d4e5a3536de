"""Group commit: concurrent batches share a transaction, yet each stands or falls alone."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridai.edge.ingest.group_commit import GroupCommit
from hybridai.edge.ingest.intake import Ingest
from hybridai.edge.ingest.schemas import SchemaViolation
from hybridai.edge.store import columns
from hybridai.edge.store._dedup import HashIndex
from hybridai.edge.store.edge_store import EdgeStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore(tmp_path / "store.db") as opened:
        yield opened


def _records(first: int, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"ts": 1_700_000_000.0 + i, "n": i, **extra} for i in range(first, first + n)]


def _stored_ns(store: EdgeStore) -> list[int]:
    batch = store.next_batch(max_records=1_000_000)
    return [] if batch is None else [int(r.payload["n"]) for r in batch.records]


# -- the de-duplication index --------------------------------------------------------------


@pytest.mark.parametrize("spread", ["narrow", "full"])
def test_the_index_answers_as_a_set_would_over_many_batches(spread: str) -> None:
    rng = np.random.default_rng(7)
    # repeats within and across batches; "full": hashes over all 64 bits (the bitmap's prefixes)
    pool = rng.integers(0, 2**64 - 1 if spread == "full" else 50_000, 300_000, dtype=np.uint64)
    index, held = HashIndex(), set()
    for size in rng.integers(1, 6000, 150):
        batch = pool[rng.integers(0, len(pool), size)]
        fresh = index.fresh(batch)
        seen: set[int] = set()
        for value, is_fresh in zip(batch.tolist(), fresh.tolist(), strict=True):
            assert is_fresh == (value not in held and value not in seen)
            seen.add(value)
        index.add(batch[fresh])
        held |= seen
        assert len(index) == len(held)
    rebuilt = HashIndex([np.array(sorted(held), dtype=np.uint64)])  # as after an eviction
    probe = pool[:5000]
    assert rebuilt.fresh(probe).tolist() == index.fresh(probe).tolist()


def test_runs_not_yet_committed_count_as_held() -> None:
    index = HashIndex([np.array([1, 2], dtype=np.uint64)])
    staged = [np.array([3, 5], dtype=np.uint64)]
    batch = np.array([1, 3, 4, 4, 5, 6], dtype=np.uint64)
    assert index.fresh(batch, also=staged).tolist() == [False, False, True, False, False, True]


# -- the leader/follower primitive ---------------------------------------------------------


def test_waiters_that_arrive_together_are_committed_together_each_with_its_own_outcome() -> None:
    groups: list[list[int]] = []
    release = threading.Event()

    def commit(items: list[int]) -> Sequence[int | BaseException]:
        if not groups:
            release.wait(5)  # the first leader holds the line while the others queue
        groups.append(items)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    committer: GroupCommit[int, int] = GroupCommit(commit)
    outcomes: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            outcomes[i] = committer.submit(i)
        except ValueError as exc:
            outcomes[i] = str(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    threads[0].start()
    time.sleep(0.1)  # the first is leading
    for t in threads[1:]:
        t.start()
    time.sleep(0.3)  # the rest are in line
    release.set()
    for t in threads:
        t.join(10)
    assert outcomes == {i: f"odd {i}" if i % 2 else i * 10 for i in range(8)}
    assert sorted(i for g in groups for i in g) == list(range(8))  # each committed once
    assert len(groups) == 2 and len(groups[1]) == 7  # the second leader took the whole line


def test_a_commit_that_fails_fails_every_waiter_of_its_group_and_the_next_goes_on() -> None:
    calls = 0

    def commit(items: list[str]) -> Sequence[str | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return [s.upper() for s in items]

    committer: GroupCommit[str, str] = GroupCommit(commit)
    with pytest.raises(OSError, match="disk full"):
        committer.submit("a")
    assert committer.submit("b") == "B"


# -- the store's group ---------------------------------------------------------------------


def test_a_group_is_durable_together_and_a_failed_batch_leaves_nothing(store: EdgeStore) -> None:
    first, second = columns.from_records(_records(0, 5)), columns.from_records(_records(5, 5))
    with store.group() as group:
        assert group.append("plant", first).accepted == 5
        with pytest.raises(RuntimeError), group.batch():
            group.append("plant", second)
            raise RuntimeError("this batch fails after its rows were written")
        again = group.append("plant", columns.from_records(_records(3, 4)))  # 3, 4 held
        assert (again.accepted, again.duplicates) == (2, 2)
    assert sorted(_stored_ns(store)) == [0, 1, 2, 3, 4, 5, 6]
    assert store.stats().records_ingested == 7


def test_a_group_that_raises_stores_nothing_and_forgets_its_hashes(store: EdgeStore) -> None:
    with pytest.raises(RuntimeError), store.group() as group:
        group.append("plant", columns.from_records(_records(0, 5)))
        raise RuntimeError("before the commit")
    assert store.stats().records_ingested == 0
    assert store.append("plant", _records(0, 5)).accepted == 5  # not taken for duplicates


# -- ingest with concurrent writers --------------------------------------------------------


def test_concurrent_writers_store_every_record_once(store: EdgeStore) -> None:
    ingest = Ingest(store, {})
    sent = [_records(i * 100, 100) for i in range(40)]
    results: list[int] = []

    def writer(batches: list[list[dict[str, Any]]]) -> None:
        for batch in batches:
            # every batch twice: the second is all duplicates, whichever group it lands in
            results.append(ingest.write("plant", batch).accepted)
            results.append(ingest.write("plant", batch).accepted)

    threads = [threading.Thread(target=writer, args=(sent[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(results) == 4000
    assert sorted(_stored_ns(store)) == list(range(4000))


def test_concurrent_batches_cannot_give_a_field_two_types(store: EdgeStore) -> None:
    ingest = Ingest(store, {})
    rng = random.Random(3)
    kinds = [rng.choice(["number", "string"]) for _ in range(24)]
    outcomes: dict[int, str] = {}

    def writer(i: int) -> None:
        value: Any = 1.5 if kinds[i] == "number" else "high"
        try:
            ingest.write("plant", _records(i * 10, 10, level=value))
            outcomes[i] = "stored"
        except SchemaViolation:
            outcomes[i] = "refused"

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    schema = ingest.schemas.get("plant")
    assert schema is not None
    kept = schema.fields["level"]
    assert all((outcomes[i] == "stored") == (kinds[i] == kept) for i in range(24))
    batch = store.next_batch(max_records=10_000)
    assert batch is not None
    want = float if kept == "number" else str
    assert all(type(r.payload["level"]) is want for r in batch.records)
