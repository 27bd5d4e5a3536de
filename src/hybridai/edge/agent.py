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
from typing import TYPE_CHECKING

from hybridai import __version__
from hybridai.edge.clock import ClockCollector, ClockSkew
from hybridai.edge.cloud_client import CloudClient, CloudUnavailable
from hybridai.edge.data_policy import EdgeDataPolicy, store_key, trusted_key
from hybridai.edge.dataplane import DataPlane
from hybridai.edge.desired_cache import DesiredCache
from hybridai.edge.edge_config import applied, effective, local_config
from hybridai.edge.identity import DeviceIdentity
from hybridai.edge.identity_metrics import CertificateCollector
from hybridai.edge.ingest.declared_schemas import DeclaredSchemas
from hybridai.edge.ingest.intake import Ingest
from hybridai.edge.ingest.mqtt_metrics import MqttCollector
from hybridai.edge.instance_lock import InstanceLock
from hybridai.edge.link_problems import CloudTrouble
from hybridai.edge.models.bundle import start_from_bundle
from hybridai.edge.models.drift import DriftMonitor
from hybridai.edge.models.reconciler import Reconciler
from hybridai.edge.routing.backend import CloudLink, EdgeBackend
from hybridai.edge.routing.deferral import DeferralRouters
from hybridai.edge.routing.hard_examples import STREAM as HARD_EXAMPLES
from hybridai.edge.routing.peer_calls import PeerCalls
from hybridai.edge.routing.peer_tls import PeerTls
from hybridai.edge.routing.placement_state import PlacementState
from hybridai.edge.routing.summary import summarize
from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.store.metrics import StoreCollector
from hybridai.edge.sync.uploader import SyncError, Uploader
from hybridai.link import pki
from hybridai.link.retry import Backoff
from hybridai.observability.supervisor import Classify, Failure, Supervisor, describe
from hybridai.protocol.edge_settings import Merged
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import (
    Capabilities,
    DesiredState,
    EnrollRequest,
    StatusReport,
    StoreStats,
)
from hybridai.protocol.policy import DataPolicy
from hybridai.protocol.site_access import SiteAccess
from hybridai.serving import model_info
from hybridai.serving.repository import ModelRepository

if TYPE_CHECKING:
    from hybridai.edge.ingest.mqtt import MqttIngest

log = logging.getLogger(__name__)
SITE = "site"
RENEW_CHECK_MAX_S = 300.0  # look again at least this often (clock jumps, a failed renewal)
FINAL_REFUSALS = frozenset({400, 401, 403, 404, 405, 409, 410, 422})  # enrollment: give up


def capabilities(memory_override_mb: int | None = None) -> Capabilities:
    """What this machine offers, as the registry records it for placement."""
    import onnxruntime

    try:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        memory_mb = 1024
    memory_mb = memory_override_mb or memory_mb
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
        self.instance_lock = InstanceLock(settings.data_dir)
        self.instance_lock.acquire()  # before the store opens: one agent per data directory
        self.device_id = settings.device_id
        self.store = EdgeStore(settings.data_dir / "store.db", key=store_key(settings))
        self.ingest = Ingest(self.store, settings.stream_schemas)  # HTTP, SDK and MQTT ingest
        self.mqtt: MqttIngest | None = None
        if settings.mqtt_url:
            from hybridai.edge.ingest.mqtt import MqttIngest

            self.mqtt = MqttIngest(settings, self.ingest)
        self.repository = ModelRepository()
        self.site = self.store.get_meta(SITE)
        self.identity = DeviceIdentity(settings.data_dir, self.device_id, settings.ca_file)
        self.tls = self.identity.context(time.time())
        self.clock = ClockSkew(settings.max_clock_skew_s)  # against the cloud's answers
        self.trouble = CloudTrouble(settings.cloud_url, self.clock)
        self.cloud = CloudClient(settings.cloud_url, self.device_id, self.tls, clock=self.clock)
        self.link = CloudLink()
        self.capabilities = capabilities(settings.memory_mb)
        # The desired state, and what this edge runs by from it: ``apply`` keeps them current.
        self.desired = DesiredCache(settings.data_dir / "models" / "desired.json")
        self.policies: dict[str, DataPolicy] = {}
        self.token_public_key: str | None = None
        self.local_config = local_config(settings)
        self.config: Merged = effective(self.local_config, None)
        self.backend = EdgeBackend(
            self.repository,
            self.cloud,
            self.link,
            self.device_id,
            settings.cloud_timeout_s,
            state=PlacementState(
                self.device_id,
                queue_budget=settings.queue_budget,
                cloud_cost_per_call=settings.cloud_cost_per_call,
                memory_mb=float(self.capabilities.memory_mb),
                accelerator=self.capabilities.accelerator,
                link=self.link,
            ),
            budget_margin_ms=settings.budget_margin_ms,
            probe_interval_s=settings.probe_interval_s,
            hard_examples=self._keep_hard_example,
            # mutual TLS to site peers, each pinned to the device and key the cloud recorded
            peers=PeerCalls(self.device_id, tls=PeerTls(self.identity, self.site_access)),
            desired=lambda: self.desired.current,
        )
        self.reconciler = Reconciler(
            self.repository,
            self.cloud,
            settings.data_dir / "models",
            settings.threads,
            trust=trusted_key(settings),
            execution_providers=settings.execution_providers,
        )
        # Learned deferral routers, verified under the key the model artifacts are
        self.backend.deferral = DeferralRouters(
            lambda: self.desired.current, lambda: self.reconciler.trust.current()
        )
        self.data_policy = EdgeDataPolicy(settings, self.store, lambda: self.policies)
        self.dataplane = DataPlane(settings, self.store)
        self.backend.metrics.registry.register(StoreCollector(self._store_stats))
        self.backend.metrics.registry.register(ClockCollector(self.clock))
        self.backend.metrics.registry.register(CertificateCollector(self.identity))
        model_info.watch(self.backend.metrics.registry, "hybridai_edge", self.repository)
        if self.mqtt is not None:
            self.backend.metrics.registry.register(MqttCollector(self.mqtt.stats))
        self.schemas = DeclaredSchemas(  # stream schemas the cloud declares
            self.ingest,
            lambda: self.desired.current.stream_schemas if self.desired.current else None,
        )
        self.drift = DriftMonitor(
            lambda: self.desired.current.models if self.desired.current else []
        )
        self.backend.on_served = self.drift.observe
        self.uploader: Uploader | None = None
        self.started = time.time()
        self.enrolled = asyncio.Event()
        self._renew_wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random()
        self._backoff = Backoff(base_s=0.5, max_s=10.0)
        self.loops = Supervisor(self._backoff, self._rng)  # every loop below; their health
        self.last_error: str | None = None
        self.fatal: str | None = None  # a refusal no retry can change (the process exits)
        self.on_fatal: Callable[[], None] | None = None  # how to stop the process

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        cached = self.desired.load()
        if cached is not None:
            await self.apply(cached, restoring=True)
        elif self.settings.bundle_file is not None:
            await self.apply(await start_from_bundle(self.reconciler, self.settings.bundle_file))
        await asyncio.to_thread(self.schemas.apply)
        if self.mqtt is not None:
            self.mqtt.start(self.loops.reporter("mqtt"))  # paho's thread, reported as a loop
        self.trouble.own_certificate(self.identity.certificate(), time.time())
        if self.identity.valid(time.time()) and self.site:
            self._on_enrolled()
        self._tasks = [
            asyncio.create_task(self._loop("enroll", self._enroll_once, until_enrolled=True)),
            asyncio.create_task(self._after_enrollment(self._renew_loop)),
            asyncio.create_task(self._after_enrollment(self._desired_loop)),
            asyncio.create_task(self._after_enrollment(self._heartbeat_loop)),
            asyncio.create_task(self._after_enrollment(self._sync_loop)),
            asyncio.create_task(self._loop("retention", self._retention_step)),
        ]

    async def stop(self) -> None:
        self._stop.set()
        await self.loops.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop)
        await self.backend.aclose()
        await self.cloud.aclose()
        self.store.close()
        self.instance_lock.release()

    def _on_enrolled(self) -> None:
        assert self.site is not None
        self.uploader = Uploader(
            self.store,
            self.cloud,
            self.device_id,
            self.site,
            max_records=self._batch_max_records(),
            policies=self.data_policy.policies,
            site_key=self.data_policy.site_key,
            bandwidth=lambda: self.dataplane.bandwidth,
            window=lambda: self.dataplane.window,
            # no batch leaves before the policies are known
            ready=lambda: self.desired.current is not None,
            interval=lambda: self._setting("sync_interval_s", self.settings.sync_interval_s),
            on_synced=self.link.success,
        )
        self.enrolled.set()

    # -- loops ----------------------------------------------------------------------------

    async def _loop(
        self, name: str, step: Callable[[], Awaitable[float]], until_enrolled: bool = False
    ) -> None:
        """Run ``step`` under the supervisor: any failure backs off and restarts it."""
        until = self.enrolled.is_set if until_enrolled else None
        await self.loops.run(name, step, classify=self._failure(name), until=until)

    def _failure(self, name: str) -> Classify:
        """How a loop's failure reads: the cloud's trouble in words, else the error itself."""

        async def classify(exc: Exception) -> Failure:
            if isinstance(exc, CloudUnavailable | SyncError):
                self.link.failure(time.time())
                told = await self.trouble.failed(exc)
                self.last_error = f"{name}: {told}"
                return Failure(told, expected=True, told=True)
            if isinstance(exc, ApiError):
                self.last_error = self.trouble.refused(name, exc)
                return Failure(self.last_error, expected=True, min_delay_s=2.0, told=True)
            message = describe(exc)  # the loop's own health names the loop
            self.last_error = f"{name}: {message}"
            return Failure(message)

        return classify

    async def _after_enrollment(self, loop: Callable[[], Awaitable[None]]) -> None:
        await self.enrolled.wait()
        await loop()

    def _give_up(self, message: str) -> None:
        """A refusal no retry can change: say it, and stop the process (it exits non-zero)."""
        self.fatal = message
        log.error("%s", message)
        if self.on_fatal is not None:
            self.on_fatal()

    async def _enroll_once(self) -> float:
        token = self.settings.enroll_token
        if token is None:
            raise ApiError(
                401,
                ErrorCode.BAD_ENROLLMENT_TOKEN,
                "this device holds no valid certificate: start it with --enroll-token from "
                "`hybridai fleet enroll-token SITE/DEVICE` (and --ca-file naming the cloud's CA)",
            )
        try:
            response = await self.cloud.enroll(
                EnrollRequest(
                    token=token.get_secret_value(),
                    device_id=self.device_id,
                    kind=self.settings.kind,
                    capabilities=self.capabilities,
                    agent_version=f"{__version__} ({platform.system()})",
                    csr=self.identity.csr(),
                    tags=self.settings.tags,
                )
            )
        except ApiError as exc:
            if exc.status in FINAL_REFUSALS:  # used, expired, unknown token; not our cloud
                self._give_up(f"enrollment refused by the cloud ({exc.code}): {exc.message}")
            raise
        self.identity.store(response.certificate, response.ca_certificate)
        self.identity.present(self.tls)
        await self.cloud.reconnect()
        self.store.set_meta(SITE, response.site)
        self.site = response.site
        self.link.success()
        self._on_enrolled()
        log.info("enrolled as %s at site %s", self.device_id, self.site)
        return 0.0

    async def _renew_loop(self) -> None:
        """Renew the certificate over mTLS once less than a third of its lifetime is left."""

        async def step() -> float:
            if self.clock.skew_s is None:
                return 2.0  # the first answer from the cloud tells its clock: wait for it
            now = self.clock.cloud_time(time.time())  # a skewed clock never churns certificates
            renew_at = self.identity.renew_at()
            if now >= renew_at or self._renewal_ordered():
                response = await self.cloud.renew(self.identity.csr())
                self.identity.store(response.certificate, response.ca_certificate)
                self.identity.present(self.tls)
                log.info("renewed the device certificate")
                renew_at = self.identity.renew_at()
            self._renew_wake.clear()  # a self-healing order wakes it early
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._renew_wake.wait(), min(max(renew_at - now, 1.0), RENEW_CHECK_MAX_S)
                )
            return 0.0

        await self._loop("renew", step)

    def _renewal_ordered(self) -> bool:
        """A self-healing order asks for a renewal while the certificate ends before a time."""
        healing = self.desired.current.settings.healing if self.desired.current else None
        cert = self.identity.certificate()
        if healing is None or healing.renew_before is None or cert is None:
            return False
        return pki.not_after(cert) < healing.renew_before

    async def _desired_loop(self) -> None:
        async def step() -> float:
            desired = await self.cloud.desired_state(
                self.desired.generation, self.settings.poll_wait_s
            )
            self.link.success()
            if desired is not None:
                await self.apply(desired)
            return 0.0

        await self._loop("desired-state", step)

    async def apply(self, desired: DesiredState, restoring: bool = False) -> None:
        """Fan ``desired`` out to every part that obeys it; all apply live, without a restart.

        Settings, policies, schemas, peers and the token key apply at once; then the models
        (a transient download error propagates, so the poll retries with the same ETag). A
        part that cannot apply its share keeps its last good state and reports why (the data
        plane's ``error``, a schema's refusal, a model's ``failed_version``). ``restoring``: a
        cached state at start, its models from the local cache only.
        """
        self.desired.receive(desired)
        self.policies = {p.stream: p for p in desired.policies}
        self.token_public_key = desired.settings.token_public_key
        if desired.settings.healing is not None and desired.settings.healing.renew_before:
            self._renew_wake.set()
        self.config = effective(self.local_config, desired.settings)
        if self.uploader is not None:
            self.uploader.max_records = self._batch_max_records()
        self.backend.state.apply(desired)  # placement policies and site peers
        await asyncio.to_thread(self.schemas.apply)
        if self.dataplane.apply(desired.settings):
            await asyncio.to_thread(self.store.enforce_quota)
        if restoring:
            await self.reconciler.restore(desired)
            return
        await self.reconciler.apply(desired)
        await asyncio.to_thread(self.desired.applied, desired)

    def _batch_max_records(self) -> int:
        return int(self._setting("batch_max_records", self.settings.batch_max_records))

    def _setting(self, key: str, default: float) -> float:
        value = getattr(self.config.settings, key, None)
        return float(value) if isinstance(value, int | float) else default

    async def _heartbeat_loop(self) -> None:
        async def step() -> float:
            await self.cloud.report(self.status())
            self.link.success()
            return self._setting("heartbeat_interval_s", self.settings.heartbeat_interval_s)

        await self._loop("heartbeat", step)

    async def _sync_loop(self) -> None:
        assert self.uploader is not None
        await self._loop("sync", self.uploader.sync_step)

    async def _retention_step(self) -> float:
        if self.clock.hold() is None:  # a wrong clock must never delete the only copy
            await self.data_policy.expire_step()
        await asyncio.to_thread(self.store.enforce_quota)
        return self._setting("retention_interval_s", self.settings.retention_interval_s)

    # -- views ----------------------------------------------------------------------------

    async def _keep_hard_example(self, record: dict[str, object]) -> None:
        """Store an escalated request durably; it syncs to the lake like any stream."""
        self.drift.hard_example(str(record.get("model")), str(record.get("edge_version")))
        await asyncio.to_thread(self.store.append, HARD_EXAMPLES, [record])

    def _store_stats(self) -> StoreStats:
        stats = self.data_policy.stats()
        bytes_per_s, records_per_s = self.uploader.throughput if self.uploader else (0.0, 0.0)
        per_stream = self.uploader.stream_throughput if self.uploader else {}
        streams = {
            name: s.model_copy(
                update={
                    "sync_bytes_per_s": per_stream.get(name, (0.0, 0.0))[0],
                    "sync_records_per_s": per_stream.get(name, (0.0, 0.0))[1],
                }
            )
            for name, s in stats.streams.items()
        }
        return stats.model_copy(
            update={
                "sync_bytes_per_s": bytes_per_s,
                "sync_records_per_s": records_per_s,
                "streams": streams,
                "batches_quarantined": self.uploader.quarantined if self.uploader else 0,
                "last_quarantine": self.uploader.last_quarantine if self.uploader else None,
            }
        )

    def site_access(self) -> SiteAccess | None:
        """Who may call this edge, as the cloud last said (kept with the desired state)."""
        desired = self.desired.current
        return desired.site_access if desired is not None else None

    def status(self) -> StatusReport:
        estimates = self.backend.state.estimates()
        peer_port = self.settings.peer_port or self.settings.port + 1
        advertise = self.settings.advertise_url or f"https://{self.settings.host}:{peer_port}"
        store = self._store_stats()  # once: it waits for the store while a writer holds it
        return StatusReport(
            device_id=self.device_id,
            agent_version=__version__,
            uptime_s=time.time() - self.started,
            models=self.reconciler.loaded(),
            store=store,
            inference=self.backend.stats.model_copy(),
            cloud_reachable=self.link.reachable(time.time()),
            clock_skew_s=self.clock.skew_s,
            clock_hold=self.clock.hold(),
            enrollment=(
                "refused" if self.fatal else "enrolled" if self.enrolled.is_set() else "enrolling"
            ),
            last_error=self.last_error,
            loops=self.loops.health(),
            estimates=estimates,
            advertise_url=advertise,
            lan_auth=self.settings.lan_auth,
            inflight=sum(m.inflight for m in self.backend.state.models.values()),
            policies=sorted(self.policies),
            drift=self.drift.report(),
            model_health=self.backend.health.snapshot(),
            mqtt=self.mqtt.stats() if self.mqtt is not None else None,
            stream_schemas=self.schemas.report(),
            settings=applied(self.config),
            settings_error=self.dataplane.error,
            metrics=summarize(self.backend, store),
        )
