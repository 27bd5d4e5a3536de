"""What the edge router knows when it places a request, kept up to date by every call it makes.

The knowledge itself and every rule that changes it live in ``orchestrator.knowledge`` as pure
functions over frozen values, which the planner's simulator calls too; this is the thin live
wrapper around them: it holds the current values, reads the clock where the caller did not, and
keeps what only a running edge has (the desired state, site peers' addresses).

Per model: a ``ModelLoad`` (this node's queue and service estimates, the cloud link's RTT,
bandwidth and service estimates, the requests in flight). Per upstream: a circuit breaker (one
for the cloud, one per site peer). From the desired state: each model's placement policy and
this site's peers. ``candidates`` turns all of it into the plain-data snapshot
``orchestrator.place`` decides on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

from hybridai.orchestrator import (
    Breaker,
    Candidate,
    CascadeRule,
    LinkEstimate,
    Measure,
    ModelPolicy,
    PolicyKind,
    Requirements,
)
from hybridai.orchestrator import knowledge as kb
from hybridai.orchestrator.knowledge import CLOUD_ID, ModelLoad, NodeFacts, PeerView
from hybridai.protocol.batching import BatchingSpec
from hybridai.protocol.fleet import DesiredState
from hybridai.protocol.placement import PlacementPolicy, SitePeer

__all__ = [
    "CLOUD_ID",
    "CloudLink",
    "ModelLoad",
    "PeerState",
    "PlacementState",
    "Placing",
    "to_placing",
]


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

    def view(self) -> PeerView:
        """The peer as plain data, for ``orchestrator.knowledge.build_candidates``."""
        info = self.info
        return PeerView(
            device_id=info.device_id,
            models=info.models,
            memory_mb=None if info.memory_mb is None else float(info.memory_mb),
            accelerator=info.accelerator,
            queue_depth=info.queue_depth,
            utilisation=info.utilisation,
            breaker=self.breaker,
            links=self.links,
            inflight=self.inflight,
        )


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
        self.node = NodeFacts(
            device_id,
            queue_budget=queue_budget,
            cloud_cost_per_call=cloud_cost_per_call,
            memory_mb=memory_mb,
            accelerator=accelerator,
        )
        self.link = link or CloudLink()
        self.models: dict[str, ModelLoad] = {}
        self.placing: dict[str, Placing] = {}
        self.peers: dict[str, PeerState] = {}
        self._applied: DesiredState | None = None

    @property
    def device_id(self) -> str:
        return self.node.device_id

    @property
    def cloud_cost_per_call(self) -> float:
        return self.node.cloud_cost_per_call

    def model(self, name: str) -> ModelLoad:
        """The model's current knowledge (a frozen value: change it with the methods below).

        Asking makes the model known: cloud probes refresh the estimates of known models only.
        """
        load = self.models.get(name)
        if load is None:
            load = self.models[name] = ModelLoad()
        return load

    # -- bookkeeping: each delegates to the pure rule of the same name -------------------------

    def started(self, name: str) -> None:
        self.models[name] = kb.started(self.model(name))

    def finished(self, name: str) -> None:
        self.models[name] = kb.finished(self.model(name))

    def served_here(self, name: str, service_ms: float, wait_ms: float) -> None:
        self.models[name] = kb.served_here(self.model(name), service_ms, wait_ms)

    def cloud_answered(
        self, name: str, n_bytes: int, total_ms: float, service_ms: float | None
    ) -> None:
        self.models[name] = kb.cloud_answered(self.model(name), n_bytes, total_ms, service_ms)

    def cloud_failed(self, name: str, n_bytes: int, elapsed_ms: float) -> None:
        self.models[name] = kb.cloud_failed(self.model(name), n_bytes, elapsed_ms)

    def probed(self, elapsed_ms: float, ok: bool) -> None:
        """A cloud liveness round trip: every model's cloud estimate learns from it."""
        for name, load in self.models.items():
            self.models[name] = kb.probed(load, elapsed_ms, ok)

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
        self,
        name: str,
        version: str | None,
        local_ready: bool,
        n_bytes: int,
        now: float | None = None,
    ) -> list[Candidate]:
        """Where the request could run (here, site peers, cloud), as ``place`` sees it.

        ``now`` is the wall clock when not given.
        """
        batching = self.placing_for(name).batching
        return kb.build_candidates(
            self.node,
            self.model(name),
            self.link.breaker,
            name,
            version,
            local_ready,
            n_bytes,
            time.time() if now is None else now,
            peers=[p.view() for p in self.peers.values()],
            per_run=batching.max_batch_size if batching is not None else 1,
        )

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
