"""What one simulated policy produced: per-request columns and the figures a report compares.

Requests are columns (numpy arrays, one slot per request in arrival-stream order) rather than
objects, so a day of a fleet stays small and becomes a Parquet table in one call. A simulated
site may stand for several identical ones (``weight``): totals are weighted, percentiles are
over requests (identical sites draw from the same distributions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from hybridai.planner.simulator import Simulation

FloatArray = np.ndarray


@dataclass
class DeviceUse:
    site: str
    device: str
    kind: str
    utilisation: float  # busy core-seconds / (cores * duration)
    energy_wh: float
    weight: float


@dataclass
class Run:
    policy: str
    arrival: FloatArray
    end: FloatArray
    budget_ms: FloatArray  # NaN: none
    wan_bytes: FloatArray
    egress_bytes: FloatArray
    cloud_calls: FloatArray
    cost: FloatArray
    quality: FloatArray
    weight: FloatArray
    escalated: FloatArray
    degraded: FloatArray
    failed: FloatArray
    site: list[str]
    device: list[str]
    workload: list[str]
    reason: list[str]
    where: list[str]
    devices: list[DeviceUse] = field(default_factory=list)
    sync_bytes: float = 0.0
    instance_hours: float = 0.0
    instance_cost: float = 0.0
    duration_s: float = 0.0
    wall_s: float = 0.0

    @classmethod
    def empty(cls, policy: str, n: int) -> Run:
        def zeros() -> FloatArray:
            return np.zeros(n)

        def flags() -> FloatArray:
            return np.zeros(n, dtype=bool)

        return cls(
            policy,
            zeros(),
            zeros(),
            np.full(n, np.nan),
            zeros(),
            zeros(),
            zeros(),
            zeros(),
            np.full(n, np.nan),
            np.ones(n),
            flags(),
            flags(),
            flags(),
            [""] * n,
            [""] * n,
            [""] * n,
            [""] * n,
            ["none"] * n,
        )

    def start(
        self,
        k: int,
        now: float,
        site: str,
        device: str,
        workload: str,
        reason: str,
        weight: float,
        budget_ms: float | None,
    ) -> None:
        self.arrival[k] = now
        self.site[k] = site
        self.device[k] = device
        self.workload[k] = workload
        self.reason[k] = reason
        self.weight[k] = weight
        if budget_ms is not None:
            self.budget_ms[k] = budget_ms

    def finish(self, sim: Simulation) -> None:
        s = sim.s
        self.duration_s = s.duration_s
        hours = s.duration_s / 3600.0
        for site in sim.sites:
            for d in site.devices.values():
                busy_s = d.servers.busy_s
                cores = d.shape.cores
                util = busy_s / (cores * s.duration_s)
                p = d.shape.power
                energy = p.idle_w * hours + (p.busy_w - p.idle_w) * busy_s / cores / 3600.0
                self.devices.append(
                    DeviceUse(site.name, d.shape.name, d.shape.kind, util, energy, site.weight)
                )
        self.instance_hours = sim.instance_s / 3600.0
        self.instance_cost = self.instance_hours * s.cloud.cost_per_instance_hour

    # -- figures -------------------------------------------------------------------------------

    @property
    def latency_ms(self) -> FloatArray:
        out: FloatArray = (self.end - self.arrival) * 1000.0
        return out

    def summary(self, egress_cost_per_gb: float = 0.0) -> dict[str, Any]:
        """The figures a report compares policies on (weighted totals, request percentiles)."""
        ok = ~self.failed
        lat = self.latency_ms[ok]
        w = self.weight
        n = float(w.sum())
        has_budget = ~np.isnan(self.budget_ms)
        over = has_budget & (self.latency_ms > np.nan_to_num(self.budget_ms)) | (
            self.failed & has_budget
        )
        where = np.asarray(self.where)
        cloud_share = float(w[ok & (where == "cloud")].sum() / n) if n else 0.0
        devices = self.devices
        dev_weight = sum(d.weight for d in devices) or 1.0
        egress_gb = float((self.egress_bytes * w).sum()) / 1e9
        quality = self.quality[ok]
        return {
            "policy": self.policy,
            "requests": n,
            "failed": float(w[self.failed].sum()),
            "latency_p50_ms": _pct(lat, 50),
            "latency_p95_ms": _pct(lat, 95),
            "latency_p99_ms": _pct(lat, 99),
            "latency_mean_ms": float(lat.mean()) if lat.size else None,
            "budget_violations": float(w[over].sum()),
            "budget_violation_share": float(w[over].sum() / max(float(w[has_budget].sum()), 1.0)),
            "cloud_share": cloud_share,
            "escalation_share": float(w[self.escalated].sum() / n) if n else 0.0,
            "degraded": float(w[self.degraded].sum()),
            "cloud_calls": float((self.cloud_calls * w).sum()),
            "cloud_call_cost": float((self.cost * w).sum()),
            "cloud_instance_hours": self.instance_hours,
            "cloud_instance_cost": self.instance_cost,
            "wan_bytes": float((self.wan_bytes * w).sum()) + self.sync_bytes,
            "sync_bytes": self.sync_bytes,
            "egress_bytes": egress_gb * 1e9,
            "egress_cost": egress_gb * egress_cost_per_gb,
            "edge_utilisation_mean": sum(d.utilisation * d.weight for d in devices) / dev_weight,
            "edge_utilisation_max": max((d.utilisation for d in devices), default=0.0),
            "edge_energy_kwh": sum(d.energy_wh * d.weight for d in devices) / 1000.0,
            "quality": float(np.average(quality, weights=w[ok])) if quality.size else None,
            "wall_s": self.wall_s,
        }

    def table(self) -> pa.Table:
        """One row per request (the report's Parquet file)."""
        return pa.table(
            {
                "policy": pa.array([self.policy] * len(self.arrival)),
                "arrival_s": self.arrival,
                "latency_ms": np.where(self.failed, np.nan, self.latency_ms),
                "budget_ms": self.budget_ms,
                "site": self.site,
                "device": self.device,
                "workload": self.workload,
                "placement": self.where,
                "reason": self.reason,
                "escalated": self.escalated,
                "degraded": self.degraded,
                "failed": self.failed,
                "cloud_calls": self.cloud_calls.astype(np.int32),
                "wan_bytes": self.wan_bytes,
                "cost": self.cost,
                "quality": self.quality,
                "weight": self.weight,
            }
        )


def _pct(values: FloatArray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None
