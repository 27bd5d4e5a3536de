"""The cloud's periodic rollout tick: a background task of the app's lifespan.

Every replica ticks; the driver locks the rollout rows, so two replicas never take the same
step twice. A failing tick is logged and retried on the next one, never fatal to the app.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hybridai.cloud.context import Cloud
from hybridai.cloud.models import rollout

log = logging.getLogger(__name__)


def tick_once(cloud: Cloud) -> None:
    with cloud.session() as session:
        rollout.tick(session, time.time())


async def rollout_ticker(cloud: Cloud) -> None:
    while True:
        await asyncio.sleep(cloud.settings.rollout_tick_s)
        try:
            await asyncio.to_thread(tick_once, cloud)
        except Exception:  # a broken tick must not stop the next one
            log.exception("rollout tick failed; retrying in %.1fs", cloud.settings.rollout_tick_s)
