"""The architecture simulator: a scenario's fleet under one placement policy, request by request.

SimPy keeps the clock and the event order; every request is placed by ``orchestrator.place``
over candidates built by ``orchestrator.knowledge.build_candidates`` from knowledge that only
``orchestrator.knowledge``'s bookkeeping changes, exactly as the live edge router does (the
same observations at the same moments: queue entry and exit, the edge run, every cloud answer,
failure and probe). What the simulation adds is the world: arrivals, FCFS queues on devices
and cloud workers, WAN transfers through each site's pipe, loss, outages, autoscaling and sync.

Deterministic for a seed: every random draw is made in bulk per (site, workload) stream from
``SeedSequence(seed)``, so every policy meets the very same requests (common random numbers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator

import numpy as np
import simpy

from hybridai.orchestrator import (
    Breaker,
    CascadeRule,
    LinkEstimate,
    ModelPolicy,
    RequestFacts,
    escalate,
    place,
)
from hybridai.orchestrator import knowledge as kb
from hybridai.orchestrator.placement import Placement
from hybridai.planner.queues import Servers
from hybridai.planner.results import Run
from hybridai.planner.scenario import Scenario
from hybridai.planner.world import DeviceSim, Stream, build, peer_views
from hybridai.protocol.placement import PolicyKind

MIN_UPSTREAM_TIMEOUT_S = 0.02  # as the live router: no call with less time left than this


class Simulation:
    """One policy over one scenario; ``run`` returns its per-request ``Run``."""

    def __init__(
        self,
        scenario: Scenario,
        policy: PolicyKind,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self.s = scenario
        self.kind = policy
        self.progress = progress
        self.env = simpy.Environment()
        c = scenario.cloud
        self.cloud = Servers(c.instances * c.workers_per_instance)
        self.instances = c.instances
        self.instance_s = 0.0
        self._instances_since = 0.0
        self.sites, self.streams = build(scenario)
        # A simulated site may stand for several: the autoscaler sizes the cloud for them all.
        total = sum(site.shape.count for site in {id(x.shape): x for x in self.sites}.values())
        self.cloud_weight = total / max(len(self.sites), 1)
        n = sum(len(st.times) for st in self.streams)
        self.run_data = Run.empty(policy.value, n)
        self.policies = {
            m.name: ModelPolicy(kind=policy, cascade=CascadeRule(threshold=m.cascade_threshold))
            for m in scenario.models
        }

    # -- the clock -----------------------------------------------------------------------------

    def at(self, t: float, fn: Callable[[], None]) -> None:
        event = self.env.timeout(max(t - self.env.now, 0.0))
        event.callbacks.append(lambda _: fn())

    def run(self) -> Run:
        self.env.process(self._arrivals())
        if self.s.cloud.autoscaling is not None:
            self.env.process(self._autoscaler())
        self.env.process(self._sync())
        # Requests in flight at the end finish: their answers are part of the day.
        began = time.perf_counter()
        self.env.run()
        self.run_data.wall_s = time.perf_counter() - began
        self._account_instances(self.env.now)
        self.run_data.finish(self)
        return self.run_data

    def _arrivals(self) -> Generator[simpy.Event, None, None]:
        starts = [st.times for st in self.streams]
        if not starts:
            return
        times = np.concatenate(starts)
        which = np.concatenate([np.full(len(t), i) for i, t in enumerate(starts)])
        index = np.concatenate([np.arange(len(t)) for t in starts])
        order = np.argsort(times, kind="stable")
        offsets = np.cumsum([0] + [len(t) for t in starts])
        step = max(len(order) // 100, 1)
        for done, k in enumerate(order.tolist()):
            t = float(times[k])
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            i = int(which[k])
            self._arrive(self.streams[i], int(index[k]), int(offsets[i] + index[k]))
            if self.progress is not None and done % step == 0:
                self.progress(done / len(order))

    # -- one request ---------------------------------------------------------------------------

    def _arrive(self, st: Stream, j: int, k: int) -> None:
        now = self.env.now
        dev, m, w = st.device, st.model, st.workload
        n_bytes = int(st.payload[j])
        st.site.pending_sync += self.s.sync.bytes_per_request
        facts = RequestFacts(m.name, w.data_class, w.latency_budget_ms, "auto")
        peers = peer_views(dev, m.name)
        local = m.name in dev.hosts
        candidates = kb.build_candidates(
            dev.node, dev.load(m.name), dev.cloud, m.name, None, local, n_bytes, now, peers=peers
        )
        decision = place(facts, candidates, self.policies[m.name])
        self._maybe_probe(dev, st, j)
        out = self.run_data
        out.start(
            k,
            now,
            st.site.name,
            dev.name,
            w.name,
            decision.reason.value,
            st.site.weight,
            decision.budget_ms,
        )
        if decision.placement is Placement.NONE or decision.target is None:
            out.failed[k] = True
            out.end[k] = now
            return
        budget = decision.budget_ms
        limit = self.s.cloud.timeout_s
        if budget is not None:
            limit = budget / 1000.0 + self.s.simulation.budget_margin_ms / 1000.0
        deadline = now + limit
        cascade = decision.escalate_to is not None
        fallback = decision.fallback_target

        def answered(where: str, degraded: bool) -> None:
            if cascade and where != "cloud":
                conf = float(st.confidence[j])
                if escalate(conf, self.policies[m.name].cascade.threshold):
                    self._escalate(st, j, k, dev, deadline, degraded)
                    return
            self._done(st, j, k, where, degraded)

        def failed() -> None:
            if fallback is None:
                out.failed[k] = True
                out.end[k] = self.env.now
                return
            self._run(fallback, st, j, k, deadline, lambda wh, _: answered(wh, True), failed_hard)

        def failed_hard() -> None:
            out.failed[k] = True
            out.end[k] = self.env.now

        self._run(decision.target, st, j, k, deadline, answered, failed, decision.degraded)

    def _run(
        self,
        target: str,
        st: Stream,
        j: int,
        k: int,
        deadline: float,
        ok: Callable[[str, bool], None],
        fail: Callable[[], None],
        degraded: bool = False,
    ) -> None:
        dev = st.device
        if target == dev.node.device_id:
            self._here(dev, st, j, lambda: ok("edge", degraded))
        elif target == kb.CLOUD_ID:
            self._cloud(st, j, k, deadline, lambda: ok("cloud", degraded), fail)
        else:
            self._peer(target, st, j, deadline, lambda: ok("peer", degraded), fail)

    def _here(self, dev: DeviceSim, st: Stream, j: int, then: Callable[[], None]) -> None:
        name = st.model.name
        now = self.env.now
        service_s = float(st.edge_ms[j]) / dev.shape.speed / 1000.0
        dev.loads[name] = kb.started(dev.load(name))
        start, end = dev.servers.offer(now, service_s)

        def finish() -> None:
            load = kb.finished(dev.load(name))
            dev.loads[name] = kb.served_here(load, service_s * 1000.0, (start - now) * 1000.0)
            then()

        self.at(end, finish)

    def _cloud(
        self,
        st: Stream,
        j: int,
        k: int,
        deadline: float,
        ok: Callable[[], None],
        fail: Callable[[], None],
    ) -> None:
        dev, site, name = st.device, st.site, st.model.name
        now = self.env.now
        out = self.run_data
        remaining = deadline - now
        n_bytes = int(st.payload[j])
        if remaining < MIN_UPSTREAM_TIMEOUT_S:
            self.at(now, fail)
            return
        timeout = min(self.s.cloud.timeout_s, remaining)
        dev.cloud = dev.cloud.on_attempt(now)
        rtt = float(st.rtt_ms[j]) / 1000.0
        link = site.shape.link
        sent = site.up.send(now, n_bytes)
        out.wan_bytes[k] += n_bytes
        if st.lost[j]:
            sent += link.retransmit_ms / 1000.0 + rtt
        arrive = sent + rtt / 2

        def give_up() -> None:
            elapsed = self.env.now - now
            dev.loads[name] = kb.cloud_failed(dev.load(name), n_bytes, elapsed * 1000.0)
            dev.cloud = dev.cloud.on_failure(self.env.now)
            fail()

        if site.down_during(now, arrive):
            self.at(now + timeout, give_up)
            return

        def at_cloud() -> None:
            t = self.env.now
            service_s = float(st.cloud_ms[j]) / 1000.0
            _start, end = self.cloud.offer(t, service_s)
            back = site.down.send(end + rtt / 2, st.model.response_bytes)
            if back - now > timeout or site.down_during(t, back):
                self.at(now + timeout, give_up)
                return
            out.wan_bytes[k] += st.model.response_bytes
            out.egress_bytes[k] += st.model.response_bytes
            in_cloud_ms = (end - t) * 1000.0

            def answer() -> None:
                total_ms = (self.env.now - now) * 1000.0
                load = dev.load(name)
                dev.loads[name] = kb.cloud_answered(load, n_bytes, total_ms, in_cloud_ms)
                dev.cloud = dev.cloud.on_success()
                dev.last_cloud_sample = self.env.now
                out.cloud_calls[k] += 1
                ok()

            self.at(back, answer)

        self.at(arrive, at_cloud)

    def _peer(
        self,
        target: str,
        st: Stream,
        j: int,
        deadline: float,
        ok: Callable[[], None],
        fail: Callable[[], None],
    ) -> None:
        dev, name = st.device, st.model.name
        peer = next(d for d in dev.site.devices.values() if d.node.device_id == target)
        now = self.env.now
        lan = dev.site.shape.link.lan_rtt_ms / 1000.0
        dev.peer_inflight[peer.name] = dev.peer_inflight.get(peer.name, 0) + 1
        n_bytes = int(st.payload[j])

        def answered() -> None:
            dev.peer_inflight[peer.name] -= 1
            total_ms = (self.env.now - now) * 1000.0
            service_ms = float(st.edge_ms[j]) / peer.shape.speed
            link = dev.peer_links.get((peer.name, name), LinkEstimate())
            dev.peer_links[(peer.name, name)] = link.observe(n_bytes, total_ms, service_ms)
            dev.peer_breakers[peer.name] = Breaker()
            self.at(self.env.now + lan / 2, ok)

        self.at(now + lan / 2, lambda: self._here(peer, st, j, answered))

    def _escalate(
        self, st: Stream, j: int, k: int, dev: DeviceSim, deadline: float, degraded: bool
    ) -> None:
        out = self.run_data
        out.escalated[k] = True
        st.site.pending_sync += self.s.sync.hard_example_bytes

        def failed() -> None:
            self._done(st, j, k, "edge", True)

        self._cloud(st, j, k, deadline, lambda: self._done(st, j, k, "cloud", degraded), failed)

    def _done(self, st: Stream, j: int, k: int, where: str, degraded: bool) -> None:
        out = self.run_data
        out.end[k] = self.env.now
        out.where[k] = where
        out.degraded[k] = degraded
        m = st.model
        if where == "cloud":
            out.quality[k] = m.cloud.quality
        else:
            out.quality[k] = m.edge.confidence.accuracy(float(st.confidence[j]))
        out.cost[k] = out.cloud_calls[k] * self.s.cloud.cost_per_call

    # -- background: probes, autoscaling, sync -------------------------------------------------

    def _maybe_probe(self, dev: DeviceSim, st: Stream, j: int) -> None:
        now = self.env.now
        interval = self.s.simulation.probe_interval_s
        if dev.probing or now - dev.last_cloud_sample < interval or not dev.cloud.allows(now):
            return
        dev.last_cloud_sample = now
        dev.probing = True
        rtt = float(st.rtt_ms[j]) / 1000.0
        down = dev.site.down_during(now, now + rtt)
        elapsed = self.s.cloud.timeout_s if down else rtt

        def done() -> None:
            dev.probing = False
            for name, load in dev.loads.items():
                dev.loads[name] = kb.probed(load, elapsed * 1000.0, not down)
            if down:
                dev.cloud = dev.cloud.on_failure(self.env.now)
            else:
                dev.cloud = dev.cloud.on_success()

        self.at(now + elapsed, done)

    def _account_instances(self, now: float) -> None:
        self.instance_s += self.instances * (now - self._instances_since)
        self._instances_since = now

    def _autoscaler(self) -> Generator[simpy.Event, None, None]:
        a = self.s.cloud.autoscaling
        assert a is not None
        workers = self.s.cloud.workers_per_instance
        busy_before = 0.0
        while self.env.now < self.s.duration_s:
            yield self.env.timeout(a.interval_s)
            busy = (self.cloud.busy_s - busy_before) * self.cloud_weight
            busy_before = self.cloud.busy_s
            util = busy / (a.interval_s * self.instances * workers)
            want = math.ceil(self.instances * util / a.target_utilisation - 1e-9)
            want = min(max(want, a.min_instances), a.max_instances)
            self._account_instances(self.env.now)
            if want > self.instances:
                for _ in range((want - self.instances) * workers):
                    self.cloud.add(self.env.now + a.startup_s)
            else:
                for _ in range((self.instances - want) * workers):
                    self.cloud.remove()
            self.instances = want

    def _sync(self) -> Generator[simpy.Event, None, None]:
        every = self.s.sync.interval_s
        while self.env.now < self.s.duration_s:
            yield self.env.timeout(every)
            now = self.env.now
            for site in self.sites:
                if site.pending_sync <= 0.0 or site.down_during(now, now + 1e-6):
                    continue
                site.up.send(now, site.pending_sync)
                self.run_data.sync_bytes += site.pending_sync * site.weight
                site.pending_sync = 0.0


def simulate(
    scenario: Scenario,
    policies: list[PolicyKind] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> list[Run]:
    """Every policy of the scenario (or those given), one after the other, on the same draws."""
    runs = []
    for kind in policies or scenario.policies:

        def step(share: float, name: str = kind.value) -> None:
            if progress is not None:
                progress(name, share)

        runs.append(Simulation(scenario, kind, step).run())
        if progress is not None:
            progress(kind.value, 1.0)
    return runs
