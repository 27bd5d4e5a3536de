"""The cloud's periodic rollout tick: a supervised loop of the app's lifespan.

Every replica ticks; the driver locks the rollout rows, so two replicas never take the same
step twice. A failing tick is counted and retried with backoff by the app's loop supervisor
(its health shows in ``GET /api/v1/health``), never fatal to the app.
"""

from __future__ import annotations

import asyncio
import time

from hybridai.cloud.context import Cloud
from hybridai.cloud.models import rollout


def tick_once(cloud: Cloud) -> None:
    with cloud.session() as session:
        rollout.tick(session, time.time())


async def rollout_step(cloud: Cloud) -> float:
    """One tick of every active rollout; returns the pause before the next."""
    await asyncio.to_thread(tick_once, cloud)
    return cloud.settings.rollout_tick_s
