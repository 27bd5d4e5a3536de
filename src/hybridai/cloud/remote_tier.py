"""Forwarding a model's v2 requests to a remote Open Inference Protocol server (KServe, Triton).

One pooled ``httpx.AsyncClient`` per target. Inference is idempotent, so a request is retried on
connection errors and 503 only, within its time budget (``timeout_s``, retries included). A
circuit breaker (``orchestrator.breaker``) per target fails fast with 503 ``circuit_open`` while
the remote is down, instead of making every caller wait for its timeout; a supervised loop
checks ``/v2/health/ready`` of each target and reloads the configuration other replicas set.
Outcomes are stable codes: 503 ``upstream_unavailable`` (down), 504 ``upstream_timeout`` (over
budget), 502 ``bad_upstream_response`` (an answer that is not a v2 response).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from hybridai.cloud.context import Cloud
from hybridai.cloud.metrics import CloudMetrics
from hybridai.cloud.models.remote_tiers import (
    SecretUnavailable,
    list_remote_tiers,
    resolve_secret,
)
from hybridai.orchestrator.breaker import Breaker, BreakerState
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.names import v2_model_path
from hybridai.protocol.remote import RemoteTier, RemoteTierInfo, RemoteTierState
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse, ModelMetadata, RoutingHints

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a remote's answer is decoded only below this size
HEALTH_TIMEOUT_S = 2.0
HEALTH_PERIOD_S = 5.0  # health checks, and configurations other replicas set, this often
SECRET_TTL_S = 5.0  # a rotated secret file is picked up within this
_HINTS = frozenset(RoutingHints.model_fields)  # hybridai's own keys stay here


class _Failed(Exception):
    """One attempt that failed; ``retry``: a connection error or a 503 (safe to repeat)."""

    def __init__(self, error: ApiError, kind: str, retry: bool) -> None:
        super().__init__(error.message)
        self.error, self.kind, self.retry = error, kind, retry


def _tls(config: RemoteTier) -> ssl.SSLContext | bool:
    if urlsplit(config.url).scheme != "https":
        return True
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.client_cert and config.client_key:
        context.load_cert_chain(config.client_cert, config.client_key)
    return context


class RemoteTarget:
    """One model's remote server: its client, breaker and last health check."""

    def __init__(
        self,
        name: str,
        config: RemoteTier,
        metrics: CloudMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.config, self.metrics, self.clock = name, config, metrics, clock
        self.server = urlsplit(config.url).netloc
        self.breaker = Breaker(config.breaker_failures, config.breaker_cooldown_s)
        self.healthy: bool | None = None
        self.last_check_at: float | None = None
        self.last_error: str | None = None
        self._client: httpx.AsyncClient | None = None
        self._secret: tuple[float, str] | None = None  # (until, value)
        self._rng = random.Random()

    # -- plumbing -----------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.config.url,
                verify=_tls(self.config),
                timeout=self.config.timeout_s,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self) -> dict[str, str]:
        config = self.config
        if config.auth == "none" or config.secret is None:
            return {}
        now = self.clock()
        if self._secret is None or self._secret[0] < now:
            try:
                self._secret = (now + SECRET_TTL_S, resolve_secret(config.secret))
            except SecretUnavailable as exc:
                raise ApiError(
                    503,
                    ErrorCode.UPSTREAM_UNAVAILABLE,
                    f"the remote tier of model '{self.name}' has no credential: {exc}",
                ) from None
        value = self._secret[1]
        if config.auth == "bearer":
            return {"Authorization": f"Bearer {value}"}
        assert config.auth_header is not None
        return {config.auth_header: value}

    def state(self) -> RemoteTierState:
        return RemoteTierState(
            breaker=self.breaker.state(self.clock()).value,
            healthy=self.healthy,
            last_check_at=self.last_check_at,
            last_error=self.last_error,
        )

    def _observe_breaker(self) -> None:
        if self.metrics is not None:
            self.metrics.remote_breaker_state(self.name, self.breaker.state(self.clock()))

    def _failed(self, kind: str) -> None:
        self.breaker = self.breaker.on_failure(self.clock())
        if self.metrics is not None:
            self.metrics.remote_errors.labels(self.name, kind).inc()
        self._observe_breaker()

    def _succeeded(self) -> None:
        self.breaker = self.breaker.on_success()
        self._observe_breaker()

    # -- inference ----------------------------------------------------------------------------

    def _payload(self, request: InferenceRequest) -> bytes:
        parameters = {k: v for k, v in (request.parameters or {}).items() if k not in _HINTS}
        forwarded = request.model_copy(update={"parameters": parameters or None})
        return forwarded.model_dump_json(exclude_none=True).encode()

    def _path(self, version: str | None) -> str:
        model = self.config.remote_model or self.name
        return v2_model_path(model, self.config.remote_version or version, "/infer")

    async def infer(self, version: str | None, request: InferenceRequest) -> InferenceResponse:
        """Forward one request; the answer keeps the cloud's shape and names the tier."""
        now = self.clock()
        if not self.breaker.allows(now):
            if self.metrics is not None:
                self.metrics.remote_errors.labels(self.name, "circuit_open").inc()
            wait = max(0.0, self.config.breaker_cooldown_s - (now - (self.breaker.opened_at or 0)))
            raise ApiError(
                503,
                ErrorCode.CIRCUIT_OPEN,
                f"the remote tier of model '{self.name}' ({self.server}) failed "
                f"{self.breaker.failures} times in a row: the cloud refuses at once for "
                f"{wait:.1f} s more, then tries it again; see `hybridai model remote show "
                f"{self.name}`",
            )
        self.breaker = self.breaker.on_attempt(now)
        started = time.perf_counter()
        deadline = now + self.config.timeout_s
        payload, path, headers = self._payload(request), self._path(version), self._headers()
        headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            try:
                body = await self._attempt(path, payload, headers, deadline)
                response = self._decode(body)
                break
            except _Failed as failed:
                pause = min(0.05 * 2**attempt, 0.5) * (0.5 + self._rng.random() / 2)
                budget_left = deadline - self.clock() > pause
                if failed.retry and attempt < self.config.retries and budget_left:
                    attempt += 1
                    await asyncio.sleep(pause)
                    continue
                if failed.kind == "refused":  # the remote is up and said no: not its fault
                    self._succeeded()
                else:
                    self._failed(failed.kind)
                self._observe(started, failed.kind)
                raise failed.error from None
        self._succeeded()
        seconds = self._observe(started, "ok")
        parameters = dict(response.parameters or {})
        parameters.update(
            {
                "placement": "cloud",
                "reason": "served_by_remote",
                "tier": "remote",
                "remote_server": self.server,
                "service_ms": round(seconds * 1000, 3),
            }
        )
        if attempt:
            parameters["remote_retries"] = attempt
        return response.model_copy(update={"model_name": self.name, "parameters": parameters})

    def _observe(self, started: float, outcome: str) -> float:
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.remote_latency.labels(self.name, outcome).observe(seconds)
        return seconds

    async def _attempt(
        self, path: str, payload: bytes, headers: dict[str, str], deadline: float
    ) -> bytes:
        remaining = deadline - self.clock()
        where = f"the remote tier of model '{self.name}' ({self.server})"
        if remaining <= 0:
            raise _Failed(self._timeout(where), "timeout", retry=False)
        try:
            async with self.client().stream(
                "POST", path, content=payload, headers=headers, timeout=remaining
            ) as answer:
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _Failed(
                            ApiError(
                                502,
                                ErrorCode.BAD_UPSTREAM_RESPONSE,
                                f"{where} answered more than {MAX_RESPONSE_BYTES} bytes",
                            ),
                            "bad_response",
                            retry=False,
                        )
                status = answer.status_code
        except httpx.TimeoutException:
            raise _Failed(self._timeout(where), "timeout", retry=False) from None
        except httpx.TransportError as exc:
            error = ApiError(
                503,
                ErrorCode.UPSTREAM_UNAVAILABLE,
                f"{where} cannot be reached ({type(exc).__name__}); the cloud retried within "
                "the request's budget; check that the server runs",
            )
            raise _Failed(error, "unreachable", retry=True) from None
        if status < 300:
            return bytes(body)
        raise self._status_failure(where, status, bytes(body))

    def _timeout(self, where: str) -> ApiError:
        return ApiError(
            504,
            ErrorCode.UPSTREAM_TIMEOUT,
            f"{where} did not answer within {self.config.timeout_s:g} s (its timeout_s, "
            "retries included); raise it with `hybridai model remote set --timeout`",
        )

    def _status_failure(self, where: str, status: int, body: bytes) -> _Failed:
        said = _remote_error(body)
        if status == 503:
            error = ApiError(503, ErrorCode.UPSTREAM_UNAVAILABLE, f"{where} is not ready (503)")
            return _Failed(error, "unavailable", retry=True)
        if status in (401, 403):
            error = ApiError(
                502,
                ErrorCode.BAD_UPSTREAM_RESPONSE,
                f"{where} refused the cloud's credential ({status}); check the secret that "
                f"`hybridai model remote show {self.name}` names",
            )
            return _Failed(error, "refused", retry=False)
        if status == 404:
            model = self.config.remote_model or self.name
            error = ApiError(
                404, ErrorCode.MODEL_NOT_FOUND, f"{where} does not serve model '{model}': {said}"
            )
            return _Failed(error, "refused", retry=False)
        if 400 <= status < 500:
            error = ApiError(
                400, ErrorCode.INVALID_INPUT, f"{where} refused the request ({status}): {said}"
            )
            return _Failed(error, "refused", retry=False)
        error = ApiError(502, ErrorCode.BAD_UPSTREAM_RESPONSE, f"{where} failed ({status}): {said}")
        return _Failed(error, "server_error", retry=False)

    def _decode(self, body: bytes) -> InferenceResponse:
        try:
            return InferenceResponse.model_validate_json(body)
        except ValidationError:
            error = ApiError(
                502,
                ErrorCode.BAD_UPSTREAM_RESPONSE,
                f"the remote tier of model '{self.name}' ({self.server}) answered something "
                "that is not a v2 inference response; check that its url points at an Open "
                "Inference Protocol v2 server",
            )
            raise _Failed(error, "bad_response", retry=False) from None

    # -- metadata -----------------------------------------------------------------------------

    def metadata(self, version: str | None) -> ModelMetadata:
        """The remote model's v2 metadata, named as the cloud serves it (blocking: a sync route).

        A short-lived client of its own: the pooled one belongs to the event loop. Not counted
        against the breaker, which only the loop's requests and health checks move.
        """
        model = self.config.remote_model or self.name
        path = v2_model_path(model, self.config.remote_version or version)
        where = f"the remote tier of model '{self.name}' ({self.server})"
        try:
            with httpx.Client(
                base_url=self.config.url,
                verify=_tls(self.config),
                timeout=min(HEALTH_TIMEOUT_S * 2, self.config.timeout_s),
            ) as client:
                answer = client.get(path, headers=self._headers())
        except httpx.TimeoutException:
            raise self._timeout(where) from None
        except httpx.TransportError as exc:
            raise ApiError(
                503,
                ErrorCode.UPSTREAM_UNAVAILABLE,
                f"{where} cannot be reached ({type(exc).__name__}); check that the server runs",
            ) from None
        if answer.status_code >= 300:
            raise self._status_failure(where, answer.status_code, answer.content).error
        try:  # absent and null are the same to v2 servers (KServe sends "versions": null)
            parsed = json.loads(answer.content)
            found = ModelMetadata.model_validate({k: v for k, v in parsed.items() if v is not None})
        except (ValueError, AttributeError):  # ValidationError is a ValueError
            raise ApiError(
                502,
                ErrorCode.BAD_UPSTREAM_RESPONSE,
                f"{where} answered metadata that is not v2 model metadata",
            ) from None
        return found.model_copy(update={"name": self.name})

    # -- health -------------------------------------------------------------------------------

    async def check(self) -> None:
        """``GET /v2/health/ready``: a failure counts against the breaker; ready closes it."""
        try:
            answer = await self.client().get(
                "/v2/health/ready",
                headers=self._headers(),
                timeout=min(HEALTH_TIMEOUT_S, self.config.timeout_s),
            )
            ok, error = answer.status_code == 200, f"ready answered {answer.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}"
        except ApiError as exc:
            ok, error = False, exc.message
        self.healthy, self.last_check_at = ok, time.time()
        self.last_error = None if ok else error
        if ok:
            # Ready reopens the way (the server is back); it does not vouch for inference, so
            # it leaves the failure count of a closed breaker to the requests.
            if self.breaker.state(self.clock()) is not BreakerState.CLOSED:
                log.info("remote tier of %s (%s) is ready again", self.name, self.server)
                self._succeeded()
            else:
                self._observe_breaker()
        else:
            self._failed("health")


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _remote_error(body: bytes) -> str:
    """The remote's own error text (the v2 ``error`` field), bounded and without values.

    A remote may quote the request in its errors, and this text reaches the caller and the
    audit log: quoted strings and numbers are masked, so no record value passes through.
    """
    try:
        parsed = json.loads(body)
        text = parsed.get("error") if isinstance(parsed, dict) else None
    except ValueError:
        text = None
    if not isinstance(text, str) or not text:
        return "no v2 error message"
    return _NUMBER.sub("#", _QUOTED.sub("'…'", text[:2000]))[:300]


class RemoteTiers:
    """The targets of this process, one per model with a remote tier, rebuilt on a change.

    A replaced target's client is closed once its requests in flight are over (its timeout),
    not under them. A change made through this process's API wins over a reload that read the
    store before it.
    """

    def __init__(self, metrics: CloudMetrics | None = None) -> None:
        self.metrics = metrics
        self._targets: dict[str, RemoteTarget] = {}
        self._changed_at: dict[str, float] = {}  # name -> when this process's API changed it
        self._retiring: dict[asyncio.Task[None], RemoteTarget] = {}

    def target(self, name: str) -> RemoteTarget | None:
        return self._targets.get(name)

    def targets(self) -> list[RemoteTarget]:
        return list(self._targets.values())

    def _retire(self, target: RemoteTarget) -> None:
        async def close_later() -> None:
            await asyncio.sleep(target.config.timeout_s + 1.0)
            await target.close()

        task = asyncio.create_task(close_later(), name=f"retire:{target.name}")
        self._retiring[task] = target
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    def _set(self, name: str, config: RemoteTier | None) -> None:
        old = self._targets.get(name)
        if old is not None and old.config == config:
            return
        if old is not None:
            del self._targets[name]
            self._retire(old)
        if config is not None:
            self._targets[name] = RemoteTarget(name, config, self.metrics)
        elif self.metrics is not None:
            self.metrics.remote_forget(name)

    def load(self, infos: list[RemoteTierInfo], read_at: float) -> None:
        """Make the targets match ``infos``, all the tiers in the store as read at ``read_at``."""
        wanted = {info.name: info.config for info in infos}
        for name in {*wanted, *self._targets}:
            if self._changed_at.get(name, -1.0) < read_at:
                self._set(name, wanted.get(name))

    def put(self, info: RemoteTierInfo) -> None:
        """One model's new configuration, set through this process's API."""
        self._changed_at[info.name] = time.monotonic()
        self._set(info.name, info.config)

    def drop(self, name: str) -> None:
        self._changed_at[name] = time.monotonic()
        self._set(name, None)

    async def check_all(self) -> None:
        await asyncio.gather(*(target.check() for target in self.targets()))

    async def close(self) -> None:
        for task, retired in list(self._retiring.items()):
            task.cancel()
            await retired.close()
        for target in self.targets():
            await target.close()
        self._targets.clear()


def _configured(cloud: Cloud) -> list[RemoteTierInfo]:
    with cloud.session() as session:
        return list_remote_tiers(session)


async def remote_tier_step(cloud: Cloud, tiers: RemoteTiers) -> float:
    """Reload the remote tiers from the store, then check each one's readiness (a loop step)."""
    read_at = time.monotonic()
    tiers.load(await asyncio.to_thread(_configured, cloud), read_at)
    await tiers.check_all()
    return HEALTH_PERIOD_S
