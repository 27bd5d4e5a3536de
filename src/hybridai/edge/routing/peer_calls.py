"""Handing a v2 request to a site peer: one HTTP call, its breaker, its link estimate.

The peer answers locally or not at all (``PEER_PARAM`` marks the request, so it never hands
it on: no loops, no cascade). A peer that fails, times out or lacks the model raises
``UpstreamFailed``: the router falls back on site or answers 503; so does one that refuses us
(401/403) or that the cloud has not named as of this site. Any other 4xx is the client's own
error and passes through as it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from hybridai.edge.routing.peer_tls import PeerNotTrusted, PeerTls
from hybridai.edge.routing.placement_state import PeerState
from hybridai.link.transport import async_client
from hybridai.orchestrator import LinkEstimate
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.names import v2_model_path
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse

PEER_PARAM = "hybridai_peer_of"  # set on a request handed to a site peer: it answers locally


class UpstreamFailed(Exception):
    """A peer or cloud call that failed; the caller falls back or answers 503.

    ``answer`` keeps an upstream's own 404 (it lacks the model): the link is healthy, and
    when nothing on the site can answer instead, the client hears that 404, not a 503.
    """

    def __init__(self, message: str, answer: ApiError | None = None) -> None:
        super().__init__(message)
        self.answer = answer


class PeerCalls:
    """The HTTP clients this edge uses for its site peers (a ``PeerInference``).

    With ``tls`` (the agent's), each peer gets its own client over mutual TLS, pinned to the
    device and keys the cloud recorded for it (``peer_tls``); a peer that offers no https URL
    or that the cloud has not named is not called. ``transport`` replaces the network:
    ``httpx.ASGITransport(peer_app)`` runs a peer in process, ``httpx.MockTransport(handler)``
    plays a failing one.
    """

    def __init__(
        self,
        device_id: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: PeerTls | None = None,
    ) -> None:
        self.device_id = device_id
        self._http = async_client("http://peer.invalid", transport=transport)
        self._tls = tls if transport is None else None
        self._clients: dict[str, tuple[tuple[object, ...], httpx.AsyncClient]] = {}
        self._retired: list[httpx.AsyncClient] = []

    async def aclose(self) -> None:
        for client in [self._http, *self._retired, *(c for _, c in self._clients.values())]:
            await client.aclose()

    def _client_for(self, peer: PeerState) -> httpx.AsyncClient:
        if self._tls is None:
            return self._http
        if not peer.info.url.startswith("https://"):
            raise PeerNotTrusted(f"{peer.info.device_id} offers no TLS peer listener")
        pin, context = self._tls.context(peer.info.device_id)
        held = self._clients.get(peer.info.device_id)
        if held is not None and held[0] == pin:
            return held[1]
        if held is not None:
            self._retired.append(held[1])  # closed with the rest: a call may still be using it
        client = async_client("https://peer.invalid", verify=context)
        self._clients[peer.info.device_id] = (pin, client)
        return client

    async def infer(
        self,
        peer: PeerState,
        name: str,
        version: str | None,
        request: InferenceRequest,
        n_bytes: int,
        timeout: float,
        all_outputs: bool,
    ) -> InferenceResponse:
        """Run ``request`` on ``peer``; its breaker and link estimate learn from the call."""
        path = v2_model_path(name, version, "/infer")
        parameters = {**(request.parameters or {}), PEER_PARAM: self.device_id}
        update: dict[str, Any] = {"parameters": parameters}
        if all_outputs:
            update["outputs"] = None
        body = request.model_copy(update=update)
        peer.breaker = peer.breaker.on_attempt(time.time())
        peer.inflight += 1
        began = time.perf_counter()
        try:
            http = self._client_for(peer)
            reply = await asyncio.wait_for(
                http.post(
                    peer.info.url.rstrip("/") + path,
                    content=body.model_dump_json(exclude_none=True),
                    headers={"Content-Type": "application/json"},
                    timeout=timeout,
                ),
                timeout,
            )
            # 401/403: the peer does not (yet) count us as of its site: fall back, as for a 5xx
            if reply.status_code >= 500 or reply.status_code in (401, 403, 404):
                raise UpstreamFailed(f"HTTP {reply.status_code}")
            if reply.status_code >= 400:
                raise ApiError(reply.status_code, ErrorCode.INVALID_INPUT, reply.json()["error"])
            response = InferenceResponse.model_validate_json(reply.content)
        except (httpx.HTTPError, ValueError, UpstreamFailed, TimeoutError, PeerNotTrusted) as exc:
            peer.breaker = peer.breaker.on_failure(time.time())
            raise UpstreamFailed(
                f"peer {peer.info.device_id}: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            peer.inflight -= 1
        total_ms = (time.perf_counter() - began) * 1000
        peer.breaker = peer.breaker.on_success()
        served = (response.parameters or {}).get("edge_service_ms")
        service = float(served) if isinstance(served, int | float) else None
        link = peer.links.get(name)
        peer.links[name] = (link or LinkEstimate()).observe(n_bytes, total_ms, service_ms=service)
        return response
