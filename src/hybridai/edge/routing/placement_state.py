"""What the edge router knows when it places a request, kept up to date by every call it makes.

Per model: this node's queue and service estimates (``EdgeEstimate``), the cloud link's RTT,
bandwidth and service estimates (``LinkEstimate``) and the requests in flight (the queue depth).
Per upstream: a circuit breaker (one for the cloud, one per site peer). From the desired state:
each model's placement policy and this site's peers. ``candidates`` turns all of it into the
plain-data snapshot ``orchestrator.place`` decides on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from hybridai.orchestrator import (
    Breaker,
    Candidate,
    CascadeRule,
    EdgeEstimate,
    LinkEstimate,
    Measure,
    ModelPolicy,
    PolicyKind,
    Requirements,
    Tier,
)
from hybridai.protocol.batching import BatchingSpec
from hybridai.protocol.fleet import DesiredState
from hybridai.protocol.placement import PlacementPolicy, SitePeer

CLOUD_ID = "cloud"


@dataclass
class CloudLink:
    """The edge's circuit breaker to the cloud, fed by every call the agent makes."""

    breaker: Breaker = field(default_factory=Breaker)

    def reachable(self, now: float) -> bool:
        return self.breaker.allows(now)

    def attempt(self, now: float) -> None:
        self.breaker = self.breaker.on_attempt(now)

    def success(self) -> None:
        self.breaker = self.breaker.on_success()

    def failure(self, now: float) -> None:
        self.breaker = self.breaker.on_failure(now)


@dataclass
class ModelState:
    """Live estimates of one model here and in the cloud, and its requests in flight."""

    edge: EdgeEstimate = field(default_factory=EdgeEstimate)
    cloud: LinkEstimate = field(default_factory=LinkEstimate)
    inflight: int = 0


@dataclass(frozen=True)
class Placing:
    """A model's policy as the router applies it, with the output the cascade judges."""

    policy: ModelPolicy = field(default_factory=ModelPolicy)
    output: str | None = None
    input_stream: str | None = None  # its data policy applies to every request
    batching: BatchingSpec | None = None  # None: each request runs alone


def to_placing(spec: PlacementPolicy | None) -> Placing:
    """The wire policy (``protocol.placement``) as the orchestrator's ``ModelPolicy``."""
    if spec is None:
        return Placing()
    cascade = CascadeRule()
    output = None
    if spec.cascade is not None:
        c = spec.cascade
        cascade = CascadeRule(Measure(c.measure), c.threshold or 0.0, c.score_threshold, c.band)
        output = c.output
    needs = Requirements(accelerator=spec.needs.accelerator, min_memory_mb=spec.needs.min_memory_mb)
    policy = ModelPolicy(PolicyKind(spec.kind), spec.latency_budget_ms, needs, cascade)
    return Placing(policy, output, spec.input_stream, spec.batching)


@dataclass
class PeerState:
    """A site peer as last reported, with our own breaker and estimates of reaching it."""

    info: SitePeer
    breaker: Breaker = field(default_factory=Breaker)
    links: dict[str, LinkEstimate] = field(default_factory=dict)  # per model
    inflight: int = 0  # our requests to it in flight


class PlacementState:
    """Everything ``candidates`` needs, updated from the desired state and from traffic."""

    def __init__(
        self,
        device_id: str,
        *,
        queue_budget: int | None = 16,
        cloud_cost_per_call: float = 1.0,
        memory_mb: float = math.inf,
        accelerator: str | None = None,
        link: CloudLink | None = None,
    ) -> None:
        self.device_id = device_id
        self.queue_budget = queue_budget
        self.cloud_cost_per_call = cloud_cost_per_call
        self.memory_mb = memory_mb
        self.accelerator = accelerator
        self.link = link or CloudLink()
        self.models: dict[str, ModelState] = {}
        self.placing: dict[str, Placing] = {}
        self.peers: dict[str, PeerState] = {}
        self._applied: DesiredState | None = None

    def model(self, name: str) -> ModelState:
        state = self.models.get(name)
        if state is None:
            state = self.models[name] = ModelState()
        return state

    def placing_for(self, name: str) -> Placing:
        return self.placing.get(name) or Placing()

    def apply(self, desired: DesiredState | None) -> None:
        """Take policies and peers from a new desired state (cheap when it is the same one)."""
        if desired is None or desired is self._applied:
            return
        self._applied = desired
        self.placing = {m.name: to_placing(m.policy) for m in desired.models}
        healing = desired.settings.healing
        for name, where in (healing.placement if healing else {}).items():
            if name in self.placing:  # self-healing forces it (data policies still apply)
                forced = PolicyKind.CLOUD_ONLY if where == "cloud" else PolicyKind.EDGE_ONLY
                placing = self.placing[name]
                self.placing[name] = replace(placing, policy=replace(placing.policy, kind=forced))
        infos = desired.settings.site_peers or []
        peers: dict[str, PeerState] = {}
        for info in infos:
            if info.device_id == self.device_id:
                continue
            known = self.peers.get(info.device_id)
            if known is not None and known.info.url == info.url:
                known.info = info  # keep its breaker and estimates
                peers[info.device_id] = known
            else:
                peers[info.device_id] = PeerState(info)
        self.peers = peers

    def candidates(
        self, name: str, version: str | None, local_ready: bool, n_bytes: int, now: float
    ) -> list[Candidate]:
        """Where the request could run (here, site peers, cloud), as ``place`` sees it now.

        A batched model runs up to ``max_batch_size`` queued requests at once: its queue is
        counted in batches, each taking the batch run time it measured.
        """
        state = self.model(name)
        batching = self.placing_for(name).batching
        per_run = batching.max_batch_size if batching is not None else 1
        found = [
            Candidate(
                id=self.device_id,
                tier=Tier.LOCAL,
                variant="edge" if local_ready else None,
                loaded=local_ready,
                memory_free_mb=self.memory_mb,
                accelerator=self.accelerator,
                queue_depth=-(-state.inflight // per_run),
                queue_budget=self.queue_budget,
                predicted_ms=state.edge.predict_ms(state.inflight, workers=per_run),
            )
        ]
        for peer in self.peers.values():
            has = peer.info.models.get(name)
            ready = has is not None and (version is None or has == version)
            link = peer.links.get(name)
            found.append(
                Candidate(
                    id=peer.info.device_id,
                    tier=Tier.PEER,
                    variant="edge" if ready else None,
                    loaded=ready,
                    healthy=peer.breaker.allows(now),
                    memory_free_mb=math.inf
                    if peer.info.memory_mb is None
                    else float(peer.info.memory_mb),
                    accelerator=peer.info.accelerator,
                    queue_depth=peer.info.queue_depth + peer.inflight,
                    queue_budget=self.queue_budget,
                    utilisation=peer.info.utilisation,
                    predicted_ms=None if link is None else link.predict_ms(n_bytes),
                )
            )
        found.append(
            Candidate(
                id=CLOUD_ID,
                tier=Tier.CLOUD,
                variant="cloud",
                loaded=True,
                healthy=self.link.reachable(now),
                predicted_ms=state.cloud.predict_ms(n_bytes),
                cost_per_call=self.cloud_cost_per_call,
            )
        )
        return found

    def estimates(self) -> dict[str, float]:
        """Current predictions per model, for status reports (queue empty, small request)."""
        out: dict[str, float] = {}
        for name, state in self.models.items():
            edge = state.edge.predict_ms(0)
            cloud = state.cloud.predict_ms(0)
            if edge is not None:
                out[f"edge_ms.{name}"] = float(edge)
            if cloud is not None:
                out[f"cloud_ms.{name}"] = float(cloud)
        return out
