"""One supervisor for every background loop of a process, edge or cloud.

A loop is a ``step``: one unit of periodic work that returns the pause before the next one.
The supervisor runs each step forever, and whatever a step raises (a cloud outage as much as
an SQLite I/O error or a bug) never ends the loop: the failure is counted, logged (with its
traceback the first time that error is seen in that loop, in one line after), the loop backs
off exponentially with full jitter up to a cap, then starts again. ``health()`` says, per loop,
whether it runs or backs off, how often it restarted, its last error and its last success, so
a loop that fails quietly shows in the status instead of only in a log.

It imports no tier: the edge agent and the cloud app each own one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hybridai.link.retry import Backoff
from hybridai.protocol.loops import LoopHealth, LoopState

log = logging.getLogger(__name__)
Step = Callable[[], Awaitable[float]]


@dataclass(frozen=True)
class Failure:
    """How a loop's owner reads one of its failures.

    ``expected`` failures (the cloud is unreachable) are logged in one line, never with a
    traceback; ``min_delay_s`` floors the backoff (a refusal is not retried at once); ``told``:
    the owner has logged it already, once per distinct cause (the edge's cloud problems).
    """

    message: str
    expected: bool = False
    min_delay_s: float = 0.0
    told: bool = False


Classify = Callable[[Exception], Awaitable[Failure | None]]


def describe(exc: BaseException) -> str:
    """``TypeName: message``, bounded; the message of a bare exception is its type."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _signature(exc: BaseException) -> tuple[str, str, int]:
    """What makes two failures the same error: the type and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return (
        type(exc).__qualname__,
        last.filename if last else "",
        (last.lineno or 0) if last else 0,
    )


@dataclass
class _Loop:
    name: str
    state: LoopState = "waiting"
    restarts: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    retry_in_s: float | None = None
    seen: set[tuple[str, str, int]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    def health(self) -> LoopHealth:
        return LoopHealth(
            name=self.name,
            state=self.state,
            restarts=self.restarts,
            failures=self.failures,
            consecutive_failures=self.consecutive_failures,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            last_success_at=self.last_success_at,
            retry_in_s=self.retry_in_s if self.state == "backing_off" else None,
        )


class Supervisor:
    """Runs named loops as asyncio tasks, restarts them after failures, reports their health."""

    def __init__(
        self,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backoff = backoff or Backoff(base_s=0.5, max_s=30.0)
        self.rng = rng or random.Random()
        self.clock = clock
        self._loops: dict[str, _Loop] = {}
        self._stop = asyncio.Event()

    def spawn(
        self,
        name: str,
        step: Step,
        *,
        classify: Classify | None = None,
        until: Callable[[], bool] | None = None,
        after: asyncio.Event | None = None,
        first_pause_s: float = 0.0,
    ) -> asyncio.Task[None]:
        """Start loop ``name`` as its own task; see ``run``."""
        loop = self._register(name)
        loop.task = asyncio.create_task(
            self._run(loop, step, classify, until, after, first_pause_s), name=f"loop:{name}"
        )
        return loop.task

    async def run(
        self,
        name: str,
        step: Step,
        *,
        classify: Classify | None = None,
        until: Callable[[], bool] | None = None,
        after: asyncio.Event | None = None,
        first_pause_s: float = 0.0,
    ) -> None:
        """Run loop ``name`` in the calling task: ``step`` repeats until stopped or ``until()``.

        ``after``: the loop waits for this event first (enrollment); ``first_pause_s``: the
        first step runs after this pause (a ticker), not at once; ``classify`` turns a failure
        into its message (None, or returning None: ``TypeName: message``, unexpected).
        """
        loop = self._register(name)
        loop.task = asyncio.current_task()
        await self._run(loop, step, classify, until, after, first_pause_s)

    def _register(self, name: str) -> _Loop:
        if name in self._loops and not self._done(name):
            raise ValueError(f"loop {name!r} is already running")
        loop = _Loop(name)
        self._loops[name] = loop
        return loop

    def _done(self, name: str) -> bool:
        task = self._loops[name].task
        return task is None or task.done()

    def health(self) -> list[LoopHealth]:
        return [loop.health() for loop in self._loops.values()]

    async def stop(self) -> None:
        """Stop every loop: a step in progress is cancelled; returns once all have ended."""
        self._stop.set()
        current = asyncio.current_task()
        tasks = [t for t in (loop.task for loop in self._loops.values()) if t and t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for loop in self._loops.values():
            if loop.state != "finished":
                loop.state = "stopped"

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0.0))

    async def _run(
        self,
        loop: _Loop,
        step: Step,
        classify: Classify | None,
        until: Callable[[], bool] | None,
        after: asyncio.Event | None,
        pause: float,
    ) -> None:
        if after is not None:
            await after.wait()
        attempt = 0  # failures in a row: the backoff's exponent
        while not self._stop.is_set():
            if pause > 0:
                await self._sleep(pause)
                if self._stop.is_set():
                    break
            if until is not None and until():
                loop.state = "finished"
                return
            if attempt:
                loop.restarts += 1
            loop.state = "running"
            try:
                pause = await step()
            except Exception as exc:  # every failure restarts the loop; cancellation ends it
                pause = await self._failed(loop, exc, attempt, classify)
                attempt += 1
                continue
            if attempt:
                log.info("loop %s recovered after %d failures", loop.name, attempt)
            attempt, loop.consecutive_failures = 0, 0
            loop.last_success_at = self.clock()
            loop.state = "waiting"
        loop.state = "stopped"

    async def _failed(
        self, loop: _Loop, exc: Exception, attempt: int, classify: Classify | None
    ) -> float:
        failure = await classify(exc) if classify is not None else None
        if failure is None:
            failure = Failure(describe(exc))
        loop.failures += 1
        loop.consecutive_failures += 1
        loop.last_error, loop.last_error_at = failure.message, self.clock()
        delay = max(self.backoff.delay(attempt, self.rng), failure.min_delay_s)
        loop.state, loop.retry_in_s = "backing_off", delay
        _log_failure(loop, failure, exc, delay)
        return delay

    def reporter(self, name: str) -> Reporter:
        """A loop that runs elsewhere (a library's own thread) and reports here, for health."""
        loop = self._register(name)
        return Reporter(loop, self.clock)


class Reporter:
    """The handle of a loop the supervisor does not run: it says how each run went.

    MQTT ingest runs on paho's thread, which reconnects and retries by itself; its failures are
    counted, logged and shown like any supervised loop's. Safe to call from another thread.
    """

    def __init__(self, loop: _Loop, clock: Callable[[], float]) -> None:
        self._loop, self._clock = loop, clock

    def failed(self, exc: Exception, retry_in_s: float, what: str = "") -> None:
        loop = self._loop
        message = f"{what}: {describe(exc)}" if what else describe(exc)
        loop.failures += 1
        loop.consecutive_failures += 1
        loop.last_error, loop.last_error_at = message, self._clock()
        loop.state, loop.retry_in_s = "backing_off", retry_in_s
        _log_failure(loop, Failure(message), exc, retry_in_s)

    def succeeded(self) -> None:
        loop = self._loop
        if loop.consecutive_failures:
            loop.restarts += 1
            log.info("loop %s recovered after %d failures", loop.name, loop.consecutive_failures)
        loop.consecutive_failures, loop.state = 0, "running"
        loop.last_success_at = self._clock()


def _log_failure(loop: _Loop, failure: Failure, exc: Exception, delay: float) -> None:
    """With its traceback the first time this error is seen in this loop, in one line after."""
    signature = _signature(exc)
    if failure.expected:
        fresh = signature not in loop.seen and not failure.told
        level = logging.WARNING if fresh else logging.DEBUG
        log.log(level, "loop %s: %s; retrying in %.1fs", loop.name, failure.message, delay)
    elif signature not in loop.seen:
        log.error(
            "loop %s failed: %s; restarting in %.1fs",
            loop.name,
            failure.message,
            delay,
            exc_info=exc,
        )
    else:
        log.warning(
            "loop %s failed again (%d in a row): %s; restarting in %.1fs",
            loop.name,
            loop.consecutive_failures,
            failure.message,
            delay,
        )
    loop.seen.add(signature)
