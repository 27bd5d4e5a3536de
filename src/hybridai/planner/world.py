"""The simulated world: sites, their devices and links, and the streams of requests they get.

Built once per policy from the scenario, identically for every policy (same seeds, same draws),
so policies are compared on the very same requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hybridai.orchestrator import Breaker, LinkEstimate
from hybridai.orchestrator import knowledge as kb
from hybridai.planner.arrivals import arrival_times
from hybridai.planner.queues import Pipe, Servers
from hybridai.planner.scenario import Device, Model, Scenario, Site, Workload


@dataclass
class SiteSim:
    name: str
    shape: Site
    weight: float  # how many real sites this one stands for
    up: Pipe
    down: Pipe
    outages: list[tuple[float, float]]
    devices: dict[str, DeviceSim] = field(default_factory=dict)
    pending_sync: float = 0.0

    def down_during(self, t0: float, t1: float) -> bool:
        return any(start < t1 and t0 < end for start, end in self.outages)


@dataclass
class DeviceSim:
    name: str
    shape: Device
    site: SiteSim
    node: kb.NodeFacts
    servers: Servers
    loads: dict[str, kb.ModelLoad] = field(default_factory=dict)
    cloud: Breaker = field(default_factory=Breaker)
    peer_breakers: dict[str, Breaker] = field(default_factory=dict)
    peer_links: dict[tuple[str, str], LinkEstimate] = field(default_factory=dict)
    peer_inflight: dict[str, int] = field(default_factory=dict)
    last_cloud_sample: float = 0.0
    probing: bool = False
    hosts: frozenset[str] = frozenset()  # edge variants it holds that fit in its memory

    def load(self, model: str) -> kb.ModelLoad:
        found = self.loads.get(model)
        if found is None:
            found = self.loads[model] = kb.ModelLoad()
        return found


@dataclass
class Stream:
    """One workload at one site: its requests' times and their pre-drawn randomness."""

    workload: Workload
    model: Model
    site: SiteSim
    device: DeviceSim
    times: np.ndarray
    payload: np.ndarray
    edge_ms: np.ndarray
    cloud_ms: np.ndarray
    rtt_ms: np.ndarray
    confidence: np.ndarray
    lost: np.ndarray


def build(s: Scenario) -> tuple[list[SiteSim], list[Stream]]:
    """Every simulated site, its devices, and every (site, workload) stream of requests."""
    sites: list[SiteSim] = []
    streams: list[Stream] = []
    sim = s.simulation
    shape_streams = np.random.SeedSequence(s.seed).spawn(len(s.sites))
    for si, shape in enumerate(s.sites):
        copies = shape.count
        if sim.max_sites_per_shape is not None:
            copies = min(copies, sim.max_sites_per_shape)
        weight = shape.count / copies
        seeds = shape_streams[si].spawn(copies)
        for ci in range(copies):
            name = shape.name if shape.count == 1 else f"{shape.name}-{ci + 1}"
            bps = shape.link.bandwidth_mbps * 1e6 / 8
            site = SiteSim(
                name,
                shape,
                weight,
                Pipe(bps),
                Pipe(bps),
                [(o.start_s, o.start_s + o.duration_s) for o in shape.link.outages],
            )
            for d in shape.devices:
                node = kb.NodeFacts(
                    f"{name}/{d.name}",
                    queue_budget=sim.queue_budget,
                    cloud_cost_per_call=s.cloud.cost_per_call,
                    memory_mb=d.memory_mb,
                    accelerator=d.accelerator,
                )
                fits = frozenset(m for m in d.models if s.model(m).edge.size_mb <= d.memory_mb)
                site.devices[d.name] = DeviceSim(
                    node.device_id, d, site, node, Servers(d.cores), hosts=fits
                )
            sites.append(site)
            streams += _streams(s, site, seeds[ci])
    return sites, streams


def _streams(s: Scenario, site: SiteSim, seed: np.random.SeedSequence) -> list[Stream]:
    found: list[Stream] = []
    for wi, w in enumerate(s.workloads):
        rng = np.random.default_rng(seed.spawn(wi + 1)[-1])
        runs_here = w.sites is None or site.shape.name in w.sites
        if not runs_here or w.device not in site.devices:
            continue
        model = s.model(w.model)
        times = arrival_times(w.arrival, s.duration_s, rng)
        n = len(times)
        c = model.edge.confidence
        found.append(
            Stream(
                w,
                model,
                site,
                site.devices[w.device],
                times,
                np.maximum(w.payload_bytes.draw(rng, n), 1.0).astype(np.int64),
                model.edge.service_ms.draw(rng, n),
                model.cloud.service_ms.draw(rng, n),
                site.shape.link.rtt_ms.draw(rng, n),
                c.draw(rng, n),
                rng.uniform(0.0, 1.0, n) < site.shape.link.loss,
            )
        )
    return found


def peer_views(dev: DeviceSim, model: str) -> list[kb.PeerView]:
    """The other devices of ``dev``'s site as ``dev`` sees them (their queue as reported)."""
    views = []
    for other in dev.site.devices.values():
        if other is dev:
            continue
        has = {m: "1" for m in other.hosts}
        link = dev.peer_links.get((other.name, model))
        views.append(
            kb.PeerView(
                other.node.device_id,
                has,
                memory_mb=other.shape.memory_mb,
                accelerator=other.shape.accelerator,
                queue_depth=other.load(model).inflight,
                breaker=dev.peer_breakers.get(other.name, Breaker()),
                links={} if link is None else {model: link},
                inflight=dev.peer_inflight.get(other.name, 0),
            )
        )
    return views
