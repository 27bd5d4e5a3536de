"""What the router needs of the places it can hand a request to: the cloud and site peers.

The router depends on these two small interfaces, not on the HTTP clients behind them, so a
simulator or a test can hand it another cloud or another site (STYLE: swap the transport, not
the logic). ``CloudClient`` and ``PeerCalls`` are the live implementations.
"""

from __future__ import annotations

from typing import Protocol

from hybridai.edge.routing.placement_state import PeerState
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse


class CloudInference(Protocol):
    """The cloud's v2 endpoint.

    A call that cannot reach the cloud or that the cloud fails raises
    ``edge.cloud_client.CloudUnavailable``; a refusal raises ``ApiError`` with the cloud's
    status and code.
    """

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest, timeout_s: float
    ) -> InferenceResponse: ...

    async def live(self, timeout_s: float) -> None:
        """A cheap round trip that measures the link, not a model."""
        ...


class PeerInference(Protocol):
    """The v2 endpoints of this edge's site peers.

    A peer that fails, times out or lacks the model raises ``peer_calls.UpstreamFailed``
    after updating ``peer``'s breaker; a client error other than 404 raises ``ApiError``.
    """

    async def infer(
        self,
        peer: PeerState,
        name: str,
        version: str | None,
        request: InferenceRequest,
        n_bytes: int,
        timeout: float,
        all_outputs: bool,
    ) -> InferenceResponse: ...

    async def aclose(self) -> None: ...
