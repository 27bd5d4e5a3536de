"""Who may call the edge's gRPC inference service: the LAN API's own rule (``lan_auth``).

A gRPC call is judged as the REST request it stands for: inference needs a site key with the
``infer`` role, metadata and readiness of a model need ``read``; the key travels as the
``authorization`` metadata entry (``Bearer KEY``, or HTTP basic), exactly as the HTTP header.
Site peers hand inferences over REST on the peer listener: gRPC asks for no certificate.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Scope

from hybridai.edge.lan_auth import LanGuard
from hybridai.serving.grpc_server import Admit, Need

# The REST route each kind of gRPC call stands for (``lan_auth.role_for`` reads method, path).
_ROUTE: dict[Need, tuple[str, str]] = {
    "infer": ("POST", "/v2/models/grpc/infer"),
    "read": ("GET", "/v2/models/grpc"),
}


def lan_admit(guard: LanGuard) -> Admit:
    async def admit(need: Need, metadata: Mapping[str, str]) -> None:
        method, path = _ROUTE[need]
        headers = []
        if "authorization" in metadata:
            headers.append((b"authorization", metadata["authorization"].encode("latin-1")))
        scope: Scope = {"type": "http", "method": method, "path": path, "headers": headers}
        guard.admit(scope)

    return admit
