"""Cloud state that several replicas share through the metadata store, on SQLite and PostgreSQL.

Each "replica" here is its own engine (its own connection pool), as a separate process would
have: ticker leases (one holder at a time, taken over when the holder stops renewing) and
login throttling (misses counted on either replica lock the key on both).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from hybridai.cloud.operations.tickers import Tickers
from hybridai.cloud.people.login_throttle import StoredLoginThrottle
from hybridai.storage import leases
from hybridai.storage.metadata import create_engine_for


@pytest.fixture
def second_engine(metadata_engine: Engine, metadata_url: str) -> Iterator[Engine]:
    """Another replica's engine on the same (already migrated) database."""
    engine = create_engine_for(metadata_url)
    yield engine
    engine.dispose()


def test_a_lease_has_one_holder_until_it_expires(
    metadata_engine: Engine, second_engine: Engine
) -> None:
    assert leases.acquire(metadata_engine, "rollout", "a", now=100.0, ttl_s=10.0)
    assert not leases.acquire(second_engine, "rollout", "b", now=105.0, ttl_s=10.0)
    assert leases.acquire(metadata_engine, "rollout", "a", now=108.0, ttl_s=10.0)  # renewed
    assert not leases.acquire(second_engine, "rollout", "b", now=117.0, ttl_s=10.0)
    assert leases.holder_of(second_engine, "rollout", 117.0) == "a"

    assert leases.acquire(second_engine, "rollout", "b", now=118.5, ttl_s=10.0)  # a went quiet
    assert not leases.acquire(metadata_engine, "rollout", "a", now=119.0, ttl_s=10.0)
    assert leases.holder_of(metadata_engine, "rollout", 119.0) == "b"


def test_a_released_lease_is_free_at_once_and_leases_are_independent(
    metadata_engine: Engine, second_engine: Engine
) -> None:
    assert leases.acquire(metadata_engine, "rollout", "a", now=0.0, ttl_s=60.0)
    assert leases.acquire(second_engine, "retraining", "b", now=0.0, ttl_s=60.0)
    leases.release(second_engine, "rollout", "b")  # not b's: nothing happens
    assert leases.holder_of(metadata_engine, "rollout", 1.0) == "a"

    leases.release(metadata_engine, "rollout", "a")
    assert leases.holder_of(metadata_engine, "rollout", 1.0) is None
    assert leases.acquire(second_engine, "rollout", "b", now=1.0, ttl_s=60.0)


def test_many_replicas_racing_for_a_new_lease_get_exactly_one_holder(
    metadata_engine: Engine, second_engine: Engine
) -> None:
    won: list[str] = []
    start = threading.Barrier(8)

    def contend(i: int) -> None:
        engine = metadata_engine if i % 2 else second_engine
        start.wait()
        if leases.acquire(engine, "alert-evaluation", f"r{i}", now=50.0, ttl_s=30.0):
            won.append(f"r{i}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert leases.holder_of(metadata_engine, "alert-evaluation", 50.0) == won[0]


def test_a_ticker_runs_on_one_replica_and_moves_when_its_holder_stops(
    metadata_engine: Engine, second_engine: Engine
) -> None:
    ran: list[str] = []
    first = Tickers(metadata_engine, "host:1", ttl_s=1.5)
    second = Tickers(second_engine, "host:2", ttl_s=1.5)

    def step(name: str):  # type: ignore[no-untyped-def]
        async def run() -> float:
            ran.append(name)
            return 0.1

        return run

    tick_first = first.leased("rollout", step("first"))
    tick_second = second.leased("rollout", step("second"))

    async def scenario() -> None:
        for _ in range(3):
            await tick_first()
            await tick_second()
            await asyncio.sleep(0.12)
        assert set(ran) == {"first"}  # the second replica waits
        assert first.held == {"rollout"} and second.held == set()
        await asyncio.sleep(1.6)  # the first one died: no renewal past the TTL
        await tick_second()
        assert ran[-1] == "second" and second.held == {"rollout"}
        pause = await tick_first()
        assert first.held == set() and pause == pytest.approx(0.5)  # asks again at TTL / 3
        second.release_all()
        await tick_first()  # released on a clean stop: taken back without waiting
        assert ran[-1] == "first"

    asyncio.run(scenario())


def test_login_misses_on_two_replicas_lock_the_user_on_both(
    metadata_engine: Engine, second_engine: Engine
) -> None:
    one = StoredLoginThrottle(metadata_engine, free_failures=3, base_s=2.0, max_s=8.0)
    two = StoredLoginThrottle(second_engine, free_failures=3, base_s=2.0, max_s=8.0)
    keys = ["user:ada", "addr:10.0.0.7"]

    assert one.failure(keys, 100.0) == 0.0
    assert two.failure(keys, 100.0) == 0.0
    assert one.retry_after(keys, 100.0) == 0.0
    assert two.failure(keys, 100.0) == 2.0  # the third miss in a row, wherever it was counted
    assert one.retry_after(keys, 101.0) == pytest.approx(1.0)
    assert one.failure(keys, 102.0) == 4.0  # doubles
    assert two.failure(keys, 106.0) == 8.0
    assert two.failure(keys, 114.0) == 8.0  # capped

    one.success("user:ada")  # the user's key clears, the guessing address stays locked
    assert two.retry_after(["user:ada"], 115.0) == 0.0
    assert two.retry_after(["addr:10.0.0.7"], 115.0) == pytest.approx(7.0)


def test_concurrent_misses_are_all_counted(metadata_engine: Engine, second_engine: Engine) -> None:
    throttles = [
        StoredLoginThrottle(engine, free_failures=20, base_s=1.0)
        for engine in (metadata_engine, second_engine)
    ]
    start = threading.Barrier(10)

    def miss(i: int) -> None:
        start.wait()
        throttles[i % 2].failure(["user:bob", "addr:10.0.0.9"], 10.0)

    threads = [threading.Thread(target=miss, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the 20th miss in a row locks: 10 counted concurrently, 9 more pass, the next locks
    for _ in range(9):
        assert throttles[0].failure(["user:bob"], 10.0) == 0.0
    assert throttles[1].failure(["user:bob"], 10.0) == 1.0


def test_old_misses_are_forgotten_and_their_rows_dropped(metadata_engine: Engine) -> None:
    throttle = StoredLoginThrottle(metadata_engine, free_failures=2, base_s=5.0, forget_after_s=60)
    assert throttle.failure(["user:eve"], 0.0) == 0.0
    assert throttle.failure(["user:eve"], 70.0) == 0.0  # the first miss is too old to count
    for i in range(50):
        throttle.failure([f"user:made-up-{i}"], 80.0)
    throttle.failure(["addr:x"], 200.0)  # every row past forget_after_s and unlocked goes
    with metadata_engine.connect() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM login_failures").scalar_one()
    assert count == 1


def test_a_name_that_is_a_password_or_hostile_is_counted_not_kept(metadata_engine: Engine) -> None:
    throttle = StoredLoginThrottle(metadata_engine, free_failures=1, base_s=5.0)
    for name in ("hunter2-my-real-password", "a\x00b", "x" * 10_000, "ü\udcff"):
        assert throttle.failure([f"user:{name}"], 10.0) == 5.0  # counted (and locked) all right
        assert throttle.retry_after([f"user:{name}"], 11.0) == pytest.approx(4.0)
    with metadata_engine.connect() as connection:
        keys = connection.exec_driver_sql("SELECT key FROM login_failures").scalars().all()
    assert len(keys) == 4 and all(k.startswith("user:") and len(k) == 69 for k in keys)
    assert not any("hunter2" in k for k in keys)
