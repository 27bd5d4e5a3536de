"""The edge's one door to the cloud: every call the agent makes, over one HTTP client.

Transport failures and 5xx answers become ``CloudUnavailable`` (retry later, degrade);
4xx answers carry the cloud's error code and message as ``ApiError``.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx

from hybridai.edge.clock import ClockSkew, server_time
from hybridai.edge.sync.batches import EncodedBatch
from hybridai.edge.sync.uploader import SyncError
from hybridai.link.transport import async_client
from hybridai.protocol import sync
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import (
    CertificateRequest,
    CertificateResponse,
    DesiredState,
    EnrollRequest,
    EnrollResponse,
    StatusReport,
)
from hybridai.protocol.names import v2_model_path
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse, ModelMetadata


class CloudUnavailable(SyncError):
    """The cloud could not be reached or failed; the caller retries or degrades."""


class CloudClient:
    """Talks to the cloud over mTLS: ``tls`` verifies the cloud and presents the device cert.

    The agent swaps the certificate inside ``tls`` at enrollment and renewal; no bearer
    secret is ever sent. ``transport`` replaces the network (tests hand in
    ``httpx.MockTransport`` or ``httpx.ASGITransport``); TLS is then the transport's business.
    """

    def __init__(
        self,
        base_url: str,
        device_id: str,
        tls: ssl.SSLContext | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: ClockSkew | None = None,
    ) -> None:
        self.base_url = base_url
        self.device_id = device_id
        self.clock = clock  # every answer's Date header is a sample of the cloud's clock
        self._verify: ssl.SSLContext | bool = tls if tls is not None else True
        self._transport = transport
        self._http = self._client()

    def _client(self) -> httpx.AsyncClient:
        return async_client(self.base_url, verify=self._verify, transport=self._transport)

    async def reconnect(self) -> None:
        """Drop pooled connections: they were opened without the certificate just obtained.

        An injected transport holds no connections of ours: it is kept as it is.
        """
        if self._transport is not None:
            return
        old, self._http = self._http, self._client()
        await old.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, clock_sample: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """One call; ``clock_sample=False`` for a long poll (its Date is stamped at the end)."""
        sent = time.time()
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CloudUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        stamped = server_time(response.headers.get("date"))
        if self.clock is not None and stamped is not None and clock_sample:
            self.clock.observe(sent, time.time(), stamped)
        if response.status_code >= 500:
            raise CloudUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                body = response.json()
                code, message = ErrorCode(body["code"]), str(body["error"])
            except (ValueError, KeyError, TypeError):
                code, message = ErrorCode.BAD_REQUEST, response.text[:500]
            raise ApiError(response.status_code, code, message)
        return response

    async def enroll(self, request: EnrollRequest) -> EnrollResponse:
        response = await self._call("POST", "/api/v1/enroll", json=request.model_dump())
        return EnrollResponse.model_validate_json(response.content)

    async def renew(self, csr: str) -> CertificateResponse:
        response = await self._call(
            "POST",
            f"/api/v1/devices/{self.device_id}/certificate",
            json=CertificateRequest(csr=csr).model_dump(),
        )
        return CertificateResponse.model_validate_json(response.content)

    async def put_batch(self, batch: EncodedBatch) -> sync.BatchAck:
        try:
            response = await self._call(
                "PUT",
                f"/api/v1/devices/{self.device_id}/batches/{batch.seq}",
                content=batch.body,
                headers={
                    "Content-Type": sync.PARQUET_MEDIA_TYPE,
                    sync.SHA256_HEADER: batch.sha256,
                    sync.STREAM_HEADER: batch.stream,
                    sync.RECORDS_HEADER: str(batch.records),
                },
                timeout=60.0,
            )
        except ApiError as exc:
            raise SyncError(f"cloud refused batch {batch.seq}: {exc.code}: {exc.message}") from exc
        return sync.BatchAck.model_validate_json(response.content)

    async def desired_state(self, etag: str | None, wait_s: float) -> DesiredState | None:
        """The desired state, or None when it still matches ``etag`` after ``wait_s``."""
        headers = {"If-None-Match": f'"{etag}"'} if etag else {}
        response = await self._call(
            "GET",
            f"/api/v1/devices/{self.device_id}/desired-state",
            params={"wait": wait_s},
            headers=headers,
            timeout=wait_s + 10.0,
            clock_sample=wait_s == 0,
        )
        if response.status_code == 304:
            return None
        return DesiredState.model_validate_json(response.content)

    async def artifact(self, path: str) -> bytes:
        response = await self._call("GET", path, timeout=120.0)
        return response.content

    async def report(self, report: StatusReport) -> None:
        await self._call(
            "POST",
            f"/api/v1/devices/{report.device_id}/status",
            content=report.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )

    async def live(self, timeout_s: float) -> None:
        """A cheap round trip (the v2 liveness route): measures the link, not a model."""
        await self._call("GET", "/v2/health/live", timeout=timeout_s)

    async def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        path = v2_model_path(name, version)
        response = await self._call("GET", path)
        return ModelMetadata.model_validate_json(response.content)

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest, timeout_s: float
    ) -> InferenceResponse:
        path = v2_model_path(name, version, "/infer")
        response = await self._call(
            "POST",
            path,
            content=request.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json"},
            timeout=timeout_s,
        )
        return InferenceResponse.model_validate_json(response.content)
