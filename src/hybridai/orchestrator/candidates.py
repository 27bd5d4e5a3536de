"""Where a request could run: this node, a peer on the same site, or the cloud.

A ``Candidate`` is a plain snapshot of one place as the router sees it at the moment of the
request (model variant loaded and healthy, memory, accelerator, load, predicted latency, cost,
energy). ``exclusion`` says, as an enum, why a candidate cannot take a request at all: the
policy never has to guess why something was skipped, and the decision can report it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    LOCAL = "local"  # this node
    PEER = "peer"  # another node of the same site, over the LAN: data stays on site
    CLOUD = "cloud"

    @property
    def on_site(self) -> bool:
        return self is not Tier.CLOUD


# Order used as the last tie-break: the nearest place wins an otherwise equal contest.
TIER_ORDER = {Tier.LOCAL: 0, Tier.PEER: 1, Tier.CLOUD: 2}


@dataclass(frozen=True)
class Candidate:
    """One place a request could run, as the router sees it now.

    ``healthy`` covers both the model (loaded, passing its health check) and the way there (the
    circuit breaker to a peer or the cloud allows a call). ``queue_budget`` is the deepest queue
    this node accepts before it counts as overloaded (None: never overloaded).
    """

    id: str
    tier: Tier
    variant: str | None = None  # the model variant present there; None: model absent
    loaded: bool = False
    healthy: bool = True
    memory_free_mb: float = float("inf")
    accelerator: str | None = None  # e.g. "cuda", "npu"; None: CPU only
    queue_depth: int = 0
    queue_budget: int | None = None
    utilisation: float = 0.0  # 0..1
    predicted_ms: float | None = None
    cost_per_call: float = 0.0  # money per call; zero on site
    energy_j_per_call: float = 0.0  # joules the edge spends per call

    @property
    def on_site(self) -> bool:
        return self.tier.on_site

    @property
    def overloaded(self) -> bool:
        return self.queue_budget is not None and self.queue_depth > self.queue_budget


@dataclass(frozen=True)
class Requirements:
    """What a model needs of the place that runs it (from its policy)."""

    variants: tuple[str, ...] = ()  # acceptable variants; empty: any
    accelerator: str | None = None  # required accelerator; None: any (CPU included)
    min_memory_mb: float = 0.0  # working memory needed beyond the loaded weights


class Exclusion(StrEnum):
    MODEL_MISSING = "model_missing"
    MODEL_NOT_LOADED = "model_not_loaded"
    WRONG_VARIANT = "wrong_variant"
    UNHEALTHY = "unhealthy_or_unreachable"
    NO_ACCELERATOR = "lacks_required_accelerator"
    LOW_MEMORY = "not_enough_free_memory"
    LEAVES_SITE = "data_may_not_leave_site"
    POLICY = "excluded_by_model_policy"
    HINT = "excluded_by_placement_hint"
    OVERLOADED = "overloaded_offloaded"


def incapable(candidate: Candidate, needs: Requirements) -> Exclusion | None:
    """Why ``candidate`` cannot run the model at all, or None when it can.

    A missing, unloaded or unhealthy model is never chosen: loading on demand is the
    reconciler's job, not a request's.
    """
    if candidate.variant is None:
        return Exclusion.MODEL_MISSING
    if needs.variants and candidate.variant not in needs.variants:
        return Exclusion.WRONG_VARIANT
    if not candidate.loaded:
        return Exclusion.MODEL_NOT_LOADED
    if not candidate.healthy:
        return Exclusion.UNHEALTHY
    if needs.accelerator is not None and candidate.accelerator != needs.accelerator:
        return Exclusion.NO_ACCELERATOR
    if candidate.memory_free_mb < needs.min_memory_mb:
        return Exclusion.LOW_MEMORY
    return None


def ranked_latency(candidate: Candidate) -> float:
    """The latency used to rank: unmeasured on site counts as free, unmeasured cloud as last.

    Trying an unmeasured on-site model costs nothing and measures it; the cloud gets probed by
    the traffic that must go there anyway.
    """
    if candidate.predicted_ms is not None:
        return candidate.predicted_ms
    return 0.0 if candidate.on_site else float("inf")
