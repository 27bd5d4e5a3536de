"""The loop supervisor: every failure restarts the loop with capped, jittered backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading

import pytest

from hybridai.link.retry import Backoff
from hybridai.observability.supervisor import Failure, Supervisor

FAST = Backoff(base_s=0.001, factor=2.0, max_s=0.004)


class Flaky:
    """A step that fails ``failures`` times with ``error``, then succeeds every time."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.runs, self.successes = failures, error, 0, 0

    async def __call__(self) -> float:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error
        self.successes += 1
        return 0.001


async def _until(condition: object, limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.002)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the condition never held")


def test_an_unexpected_error_restarts_the_loop_with_backoff_and_it_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    step = Flaky(3, sqlite3.OperationalError("disk I/O error"))
    seen: list[float] = []

    async def scenario() -> Supervisor:
        loops = Supervisor(backoff=FAST, rng=random.Random(0), clock=lambda: 42.0)
        loops.spawn("sync", step)
        await _until(lambda: step.successes >= 3)
        seen.extend(h.retry_in_s or 0 for h in loops.health())
        await loops.stop()
        return loops

    with caplog.at_level(logging.INFO, "hybridai.observability.supervisor"):
        loops = asyncio.run(scenario())

    (sync,) = loops.health()
    assert (sync.failures, sync.restarts, sync.consecutive_failures) == (3, 3, 0)
    assert sync.last_error == "OperationalError: disk I/O error"
    assert (sync.last_error_at, sync.last_success_at, sync.state) == (42.0, 42.0, "stopped")
    assert sync.retry_in_s is None
    # the traceback is logged once for this error; its repeats are one line each
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "loop sync failed" in tracebacks[0].getMessage()
    again = [r.getMessage() for r in caplog.records if "failed again" in r.getMessage()]
    assert len(again) == 2 and "(3 in a row)" in again[-1]
    assert any("recovered after 3 failures" in r.getMessage() for r in caplog.records)


def test_backoff_grows_to_its_cap_with_jitter_and_health_shows_the_wait() -> None:
    backoff = Backoff(base_s=0.01, factor=2.0, max_s=0.04)
    replay = random.Random(3)
    drawn = [backoff.delay(n, replay) for n in range(6)]  # what the supervisor will draw
    step = Flaky(10**6, RuntimeError("bug"))
    waits: list[float] = []

    async def scenario() -> None:
        loops = Supervisor(backoff=backoff, rng=random.Random(3))
        loops.spawn("ticker", step)
        while step.runs < 6:
            health = loops.health()[0]
            if health.state == "backing_off" and health.retry_in_s not in (None, *waits):
                waits.append(health.retry_in_s)  # type: ignore[arg-type]
            await asyncio.sleep(0.0005)
        await loops.stop()

    asyncio.run(scenario())

    assert waits and set(waits) <= set(drawn[:5])
    assert [backoff.cap(n) for n in range(4)] == [0.01, 0.02, 0.04, 0.04]
    assert all(0 <= w <= backoff.cap(n) for n, w in enumerate(drawn))


def test_expected_failures_log_one_line_use_their_message_and_floor_the_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    step = Flaky(2, ConnectionError("refused"))

    async def classify(exc: Exception) -> Failure | None:
        return Failure("the cloud is unreachable: check the link", expected=True, min_delay_s=0.02)

    async def scenario() -> Supervisor:
        loops = Supervisor(backoff=FAST)
        loops.spawn("heartbeat", step, classify=classify)
        await _until(lambda: loops.health()[0].state == "backing_off")
        assert loops.health()[0].retry_in_s == pytest.approx(0.02)
        await _until(lambda: step.successes >= 1)
        await loops.stop()
        return loops

    with caplog.at_level(logging.DEBUG, "hybridai.observability.supervisor"):
        loops = asyncio.run(scenario())

    assert loops.health()[0].last_error == "the cloud is unreachable: check the link"
    assert not [r for r in caplog.records if r.exc_info]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the repeat of the same error is DEBUG


def test_a_loop_can_wait_for_an_event_and_finish_by_itself() -> None:
    runs: list[int] = []

    async def enroll() -> float:
        runs.append(1)
        return 0.001

    async def scenario() -> tuple[list[str], list[str]]:
        gate = asyncio.Event()
        loops = Supervisor(backoff=FAST)
        loops.spawn("after-enrollment", enroll, after=gate)
        loops.spawn("enroll", enroll, until=lambda: len(runs) >= 2)
        await _until(lambda: len(runs) >= 2)
        await asyncio.sleep(0.01)
        before: list[str] = [h.state for h in loops.health()]
        with pytest.raises(ValueError, match="already running"):
            loops.spawn("after-enrollment", enroll)
        gate.set()
        await _until(lambda: len(runs) >= 3)
        await loops.stop()
        return before, [h.state for h in loops.health()]

    before, after = asyncio.run(scenario())

    assert before == ["waiting", "finished"]  # the gated loop never ran before its event
    assert after == ["stopped", "finished"]


def test_stop_cancels_a_running_step_and_a_backoff_cleanly() -> None:
    started = []

    async def slow() -> float:
        started.append(1)
        await asyncio.sleep(3600)
        return 0.0

    async def scenario() -> tuple[Supervisor, list[asyncio.Task[None]]]:
        loops = Supervisor(backoff=Backoff(base_s=3600, max_s=3600), rng=random.Random(5))
        tasks = [
            loops.spawn("slow", slow),
            loops.spawn("failing", Flaky(10**6, RuntimeError("x"))),
        ]
        await _until(lambda: started and loops.health()[1].state == "backing_off")
        await asyncio.wait_for(loops.stop(), 1.0)
        return loops, tasks

    loops, tasks = asyncio.run(scenario())

    assert all(t.done() for t in tasks)
    assert [h.state for h in loops.health()] == ["stopped", "stopped"]
    assert [t.cancelled() or t.exception() is None for t in tasks] == [True, True]


def test_a_loop_on_another_thread_reports_like_a_supervised_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loops = Supervisor(clock=lambda: 7.0)
    mqtt = loops.reporter("mqtt")

    def paho_thread() -> None:  # a library's own thread: it retries by itself
        for _ in range(2):
            try:
                raise sqlite3.OperationalError("database is locked")
            except sqlite3.OperationalError as exc:
                mqtt.failed(exc, 0.5, "storing a message from plant/m1")
        mqtt.succeeded()

    with caplog.at_level(logging.INFO, "hybridai.observability.supervisor"):
        worker = threading.Thread(target=paho_thread)
        worker.start()
        worker.join(5)

    (health,) = loops.health()
    assert (health.name, health.state, health.failures, health.restarts) == (
        "mqtt",
        "running",
        2,
        1,
    )
    assert (
        health.last_error == "storing a message from plant/m1: OperationalError: database is locked"
    )
    assert health.last_success_at == 7.0
    assert len([r for r in caplog.records if r.exc_info]) == 1
