"""What a node knows when it places a request, and how each observation changes it.

The live edge router (``edge/routing/placement_state``) and the planner's simulator both keep
their knowledge as these frozen values and change it only through these functions, so the same
sequence of observations yields the same candidates, hence the same decisions, in both worlds.
Time is always passed in; nothing here reads a clock, blocks or does I/O.

- ``ModelLoad``: one model's edge and cloud estimates and its requests in flight on this node.
- ``NodeFacts``: what does not change between requests (identity, queue budget, hardware).
- ``PeerView``: another node of the same site, as last reported, with our estimates of it.
- ``build_candidates``: all of it as the ``Candidate`` list ``place`` decides on.
- ``started`` / ``finished`` / ``served_here`` / ``cloud_answered`` / ``cloud_failed`` /
  ``probed``: the bookkeeping every call does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hybridai.orchestrator.breaker import Breaker
from hybridai.orchestrator.candidates import Candidate, Tier
from hybridai.orchestrator.estimators import EdgeEstimate, LinkEstimate

CLOUD_ID = "cloud"


@dataclass(frozen=True)
class ModelLoad:
    """Live estimates of one model here and in the cloud, and its requests in flight here."""

    edge: EdgeEstimate = field(default_factory=EdgeEstimate)
    cloud: LinkEstimate = field(default_factory=LinkEstimate)
    inflight: int = 0


@dataclass(frozen=True)
class NodeFacts:
    """The placing node itself: what its candidates carry besides estimates."""

    device_id: str
    queue_budget: int | None = 16
    cloud_cost_per_call: float = 1.0
    memory_mb: float = math.inf
    accelerator: str | None = None
    energy_j_per_call: float = 0.0


@dataclass(frozen=True)
class PeerView:
    """A site peer as it last reported itself, with our breaker and link estimates to it."""

    device_id: str
    models: Mapping[str, str] = field(default_factory=dict)  # ready model name -> version
    memory_mb: float | None = None
    accelerator: str | None = None
    queue_depth: int = 0  # as it reported
    utilisation: float = 0.0
    breaker: Breaker = field(default_factory=Breaker)
    links: Mapping[str, LinkEstimate] = field(default_factory=dict)  # per model
    inflight: int = 0  # our requests to it in flight


def local_candidate(node: NodeFacts, load: ModelLoad, ready: bool, per_run: int = 1) -> Candidate:
    """The placing node itself as a candidate.

    A batched model runs ``per_run`` queued requests at once, so its queue is counted in
    batches, each taking the batch run time it measured.
    """
    per_run = max(per_run, 1)
    return Candidate(
        id=node.device_id,
        tier=Tier.LOCAL,
        variant="edge" if ready else None,
        loaded=ready,
        memory_free_mb=node.memory_mb,
        accelerator=node.accelerator,
        queue_depth=-(-load.inflight // per_run),
        queue_budget=node.queue_budget,
        predicted_ms=load.edge.predict_ms(load.inflight, workers=per_run),
        energy_j_per_call=node.energy_j_per_call,
    )


def peer_candidate(
    peer: PeerView,
    name: str,
    version: str | None,
    n_bytes: int,
    now: float,
    queue_budget: int | None,
) -> Candidate:
    """A site peer: ready when it reports the model (at the version asked, if one is)."""
    has = peer.models.get(name)
    ready = has is not None and (version is None or has == version)
    link = peer.links.get(name)
    return Candidate(
        id=peer.device_id,
        tier=Tier.PEER,
        variant="edge" if ready else None,
        loaded=ready,
        healthy=peer.breaker.allows(now),
        memory_free_mb=math.inf if peer.memory_mb is None else float(peer.memory_mb),
        accelerator=peer.accelerator,
        queue_depth=peer.queue_depth + peer.inflight,
        queue_budget=queue_budget,
        utilisation=peer.utilisation,
        predicted_ms=None if link is None else link.predict_ms(n_bytes),
    )


def cloud_candidate(
    node: NodeFacts, load: ModelLoad, breaker: Breaker, n_bytes: int, now: float
) -> Candidate:
    """The cloud: always has the model; reachable while its circuit breaker allows a call."""
    return Candidate(
        id=CLOUD_ID,
        tier=Tier.CLOUD,
        variant="cloud",
        loaded=True,
        healthy=breaker.allows(now),
        predicted_ms=load.cloud.predict_ms(n_bytes),
        cost_per_call=node.cloud_cost_per_call,
    )


def build_candidates(
    node: NodeFacts,
    load: ModelLoad,
    cloud: Breaker,
    name: str,
    version: str | None,
    local_ready: bool,
    n_bytes: int,
    now: float,
    *,
    peers: Iterable[PeerView] = (),
    per_run: int = 1,
) -> list[Candidate]:
    """Where a request could run (here, site peers, cloud), in that order, as ``place`` sees it."""
    found = [local_candidate(node, load, local_ready, per_run)]
    found.extend(peer_candidate(p, name, version, n_bytes, now, node.queue_budget) for p in peers)
    found.append(cloud_candidate(node, load, cloud, n_bytes, now))
    return found


# -- bookkeeping: one function per kind of observation --------------------------------------
# (Constructors rather than ``dataclasses.replace``: these run on every request.)


def started(load: ModelLoad) -> ModelLoad:
    """A request joined this node's queue for the model."""
    return ModelLoad(load.edge, load.cloud, load.inflight + 1)


def finished(load: ModelLoad) -> ModelLoad:
    """A request left this node's queue (answered or failed)."""
    return ModelLoad(load.edge, load.cloud, max(load.inflight - 1, 0))


def served_here(load: ModelLoad, service_ms: float, wait_ms: float) -> ModelLoad:
    """The model ran here: ``wait_ms`` queued, then ``service_ms`` running."""
    return ModelLoad(load.edge.observe(service_ms, wait_ms), load.cloud, load.inflight)


def cloud_answered(
    load: ModelLoad, n_bytes: int, total_ms: float, service_ms: float | None
) -> ModelLoad:
    """A cloud call answered after ``total_ms``; the cloud said it spent ``service_ms``."""
    cloud = load.cloud.observe(n_bytes, total_ms, service_ms=service_ms)
    return ModelLoad(load.edge, cloud, load.inflight)


def cloud_failed(load: ModelLoad, n_bytes: int, elapsed_ms: float) -> ModelLoad:
    """A cloud call failed or timed out: what it took is a floor for a slow link."""
    return ModelLoad(load.edge, load.cloud.observe(n_bytes, elapsed_ms), load.inflight)


def probed(load: ModelLoad, elapsed_ms: float, ok: bool) -> ModelLoad:
    """A liveness round trip to the cloud took ``elapsed_ms``.

    A failed probe only raises an estimate that exists: it must not invent a round trip for a
    model never measured (that would make an unreachable cloud look measured and fast).
    """
    if ok or load.cloud.rtt_ms.samples:
        return ModelLoad(load.edge, load.cloud.observe(0, elapsed_ms), load.inflight)
    return load
