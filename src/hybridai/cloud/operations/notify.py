"""Alert notifications: one log line per event, and a JSON POST to each configured webhook.

Detection never waits on a webhook: events go on a thread-safe queue (the per-report checks
run in request threads, the evaluator in the app's loop) and a supervised loop sends each one
as its own task, retried with backoff and full jitter (``link.retry``) on connection errors,
timeouts, 408, 429 and 5xx, and given up after ``attempts`` (logged).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random

import httpx

from hybridai.link.retry import Backoff
from hybridai.observability.alerting import Event
from hybridai.protocol.alerts import Alert

log = logging.getLogger(__name__)
_RETRIED = frozenset({408, 429})
BACKOFF = Backoff(base_s=0.5, max_s=30.0)


class Notifier:
    def __init__(
        self,
        webhooks: list[str],
        backoff: Backoff = BACKOFF,
        attempts: int = 6,
        timeout_s: float = 10.0,
    ) -> None:
        self.webhooks = list(webhooks)
        self.backoff = backoff
        self.attempts = attempts
        self.timeout_s = timeout_s
        self._queue: queue.SimpleQueue[tuple[Alert, Event]] = queue.SimpleQueue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self.delivered = 0
        self.failed = 0

    def submit(self, events: list[tuple[Alert, Event]]) -> None:
        """Log each event now; queue it for the webhooks (never blocks)."""
        for alert, event in events:
            if event == "merged":
                continue  # a duplicate: counted on the alert, not announced again
            level = logging.INFO if event == "resolved" else logging.WARNING
            log.log(
                level,
                "alert %s %s (%s, %s): %s",
                event,
                alert.alert_id,
                alert.kind,
                alert.severity,
                alert.summary,
            )
            if event != "suppressed" and self.webhooks:
                self._queue.put((alert, event))

    async def step(self) -> float:
        """Start a delivery task per queued event and webhook (a supervised loop's step)."""
        while True:
            try:
                alert, event = self._queue.get_nowait()
            except queue.Empty:
                return 0.5
            body: dict[str, object] = {"event": event, "alert": alert.model_dump(mode="json")}
            for url in self.webhooks:
                task = asyncio.create_task(self._deliver(url, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: dict[str, object]) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for attempt in range(self.attempts):
                try:
                    response = await client.post(url, json=body)
                    if response.is_success:
                        self.delivered += 1
                        return
                    if response.status_code < 500 and response.status_code not in _RETRIED:
                        break  # refused for good: retrying will not help
                    reason = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    reason = type(exc).__name__
                if attempt + 1 < self.attempts:
                    log.info("alert webhook %s failed (%s): retrying", _host(url), reason)
                    await asyncio.sleep(self.backoff.delay(attempt, self._rng))
        self.failed += 1
        log.warning("alert webhook %s gave up after %d attempts", _host(url), self.attempts)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _host(url: str) -> str:
    """A webhook named by its host: its path may hold a secret token."""
    return httpx.URL(url).host or "?"
