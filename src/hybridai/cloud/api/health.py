"""The cloud process's own health: its version and its background loops (rollout, retraining).

``/v2/health/*`` stay the Open Inference Protocol's probes, exactly as specified; this route
says what an operator needs beyond "up": whether a loop keeps failing, and why.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from hybridai import __version__
from hybridai.cloud.auth import require
from hybridai.observability.supervisor import Supervisor
from hybridai.protocol.loops import CloudHealth

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health")
def health(request: Request) -> CloudHealth:
    """Each background loop: running or backing off, restarts, last error, last success."""
    require(request, "read")
    loops: Supervisor = request.app.state.loops
    return CloudHealth(version=__version__, loops=loops.health())
