"""The edge agent: wires store, models, router and the loops that talk to the cloud.

Serving and ingest never wait for the cloud. Enrollment, desired-state polling, sync and
heartbeats run as background tasks that retry with backoff and jitter, so a device that boots
offline serves its cached models and buffers data until the cloud answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import random
import time
from collections.abc import Awaitable, Callable

from hybridai import __version__
from hybridai.edge.cloud_client import CloudClient, CloudUnavailable
from hybridai.edge.reconciler import Reconciler
from hybridai.edge.router import CloudLink, EdgeBackend
from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store import EdgeStore
from hybridai.edge.sync import SyncError, Uploader
from hybridai.link.retry import Backoff
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import Capabilities, EnrollRequest, StatusReport
from hybridai.serving.repository import ModelRepository

log = logging.getLogger(__name__)
CREDENTIAL, SITE = "credential", "site"


def capabilities() -> Capabilities:
    """What this machine offers, as the registry records it for placement."""
    import onnxruntime

    try:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        memory_mb = 1024
    return Capabilities(
        cores=os.cpu_count() or 1,
        memory_mb=max(int(memory_mb), 1),
        execution_providers=list(onnxruntime.get_available_providers()),
        accelerator=None,
    )


class EdgeAgent:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.device_id = settings.device_id
        self.store = EdgeStore(settings.data_dir / "store.db")
        self.repository = ModelRepository()
        credential = self.store.get_meta(CREDENTIAL)
        self.site = self.store.get_meta(SITE)
        self.cloud = CloudClient(settings.cloud_url, self.device_id, credential)
        self.link = CloudLink()
        self.backend = EdgeBackend(
            self.repository, self.cloud, self.link, self.device_id, settings.cloud_timeout_s
        )
        self.reconciler = Reconciler(
            self.repository, self.cloud, settings.data_dir / "models", settings.threads
        )
        self.uploader: Uploader | None = None
        self.started = time.time()
        self.enrolled = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random()
        self._backoff = Backoff(base_s=0.5, max_s=10.0)
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.reconciler.restore()
        if self.store.get_meta(CREDENTIAL) and self.site:
            self._on_enrolled()
        self._tasks = [
            asyncio.create_task(self._loop("enroll", self._enroll_once, until_enrolled=True)),
            asyncio.create_task(self._after_enrollment(self._desired_loop)),
            asyncio.create_task(self._after_enrollment(self._heartbeat_loop)),
            asyncio.create_task(self._after_enrollment(self._sync_loop)),
        ]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.cloud.aclose()
        self.store.close()

    def _on_enrolled(self) -> None:
        assert self.site is not None
        self.uploader = Uploader(
            self.store,
            self.cloud,
            self.device_id,
            self.site,
            max_records=self.settings.batch_max_records,
            backoff=self._backoff,
        )
        self.enrolled.set()

    # -- loops ----------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _loop(
        self, name: str, step: Callable[[], Awaitable[float]], until_enrolled: bool = False
    ) -> None:
        """Run ``step`` forever; it returns the pause before the next run. Errors back off."""
        attempt = 0
        while not self._stop.is_set():
            if until_enrolled and self.enrolled.is_set():
                return
            try:
                pause = await step()
                attempt = 0
            except (CloudUnavailable, SyncError) as exc:
                self.link.failure(time.time())
                self.last_error = f"{name}: {exc}"
                pause = self._backoff.delay(attempt, self._rng)
                attempt += 1
            except ApiError as exc:
                self.last_error = f"{name}: {exc.code}: {exc.message}"
                log.error("%s refused by the cloud: %s", name, exc.message)
                pause = max(self._backoff.delay(attempt, self._rng), 2.0)
                attempt += 1
            await self._sleep(pause)

    async def _after_enrollment(self, loop: Callable[[], Awaitable[None]]) -> None:
        await self.enrolled.wait()
        await loop()

    async def _enroll_once(self) -> float:
        token = self.settings.enroll_token
        if token is None:
            raise ApiError(
                401,
                ErrorCode.BAD_ENROLLMENT_TOKEN,
                "this device holds no credential: start it with --enroll-token from "
                "`hybridai fleet enroll-token SITE/DEVICE`",
            )
        response = await self.cloud.enroll(
            EnrollRequest(
                token=token.get_secret_value(),
                device_id=self.device_id,
                kind=self.settings.kind,
                capabilities=capabilities(),
                agent_version=f"{__version__} ({platform.system()})",
            )
        )
        self.store.set_meta(CREDENTIAL, response.credential)
        self.store.set_meta(SITE, response.site)
        self.site = response.site
        self.cloud.set_credential(response.credential)
        self.link.success()
        self._on_enrolled()
        log.info("enrolled as %s at site %s", self.device_id, self.site)
        return 0.0

    async def _desired_loop(self) -> None:
        async def step() -> float:
            desired = await self.cloud.desired_state(
                self.reconciler.generation, self.settings.poll_wait_s
            )
            self.link.success()
            if desired is not None:
                await self.reconciler.apply(desired)
            return 0.0

        await self._loop("desired-state", step)

    def _setting(self, key: str, default: float) -> float:
        value = self.reconciler.settings.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    async def _heartbeat_loop(self) -> None:
        async def step() -> float:
            await self.cloud.report(self.status())
            self.link.success()
            return self._setting("heartbeat_interval_s", self.settings.heartbeat_interval_s)

        await self._loop("heartbeat", step)

    async def _sync_loop(self) -> None:
        async def step() -> float:
            assert self.uploader is not None
            await self.uploader.drain()
            self.link.success()
            return self._setting("sync_interval_s", self.settings.sync_interval_s)

        await self._loop("sync", step)

    # -- views ----------------------------------------------------------------------------

    def status(self) -> StatusReport:
        estimates = {f"edge_ms.{k}": v.value for k, v in self.backend.estimates.edge_ms.items()}
        estimates |= {f"cloud_ms.{k}": v.value for k, v in self.backend.estimates.cloud_ms.items()}
        return StatusReport(
            device_id=self.device_id,
            agent_version=__version__,
            uptime_s=time.time() - self.started,
            models=self.reconciler.loaded(),
            store=self.store.stats(),
            inference=self.backend.stats.model_copy(),
            cloud_reachable=self.link.reachable(time.time()),
            estimates={k: float(v) for k, v in estimates.items() if v is not None},
        )
