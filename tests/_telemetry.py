"""A synthetic fleet's status reports, steady or with one injected fault, for alert tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridai.protocol.fleet import StatusReport


@dataclass
class FakeEdge:
    """One device's counters and gauges; ``report`` advances them by one heartbeat."""

    device_id: str
    seed: int
    faults: set[str] = field(default_factory=set)
    requests: int = 0
    failed: int = 0
    escalations: int = 0
    backlog: int = 0
    uptime: float = 0.0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def report(self, interval_s: float = 5.0) -> StatusReport:
        rng = self.rng
        self.uptime += interval_s
        new = 100
        self.requests += new
        error_share = 0.3 if "errors" in self.faults else 0.01
        self.failed += int(rng.binomial(new, error_share))
        escalation_share = 0.5 if "escalations" in self.faults else 0.1
        self.escalations += int(rng.binomial(new, escalation_share))
        if "backlog" in self.faults:
            self.backlog += 400
        else:  # a drain every few reports
            self.backlog = int(rng.integers(0, 120))
        p99 = float(rng.normal(40.0, 3.0)) + (120.0 if "latency" in self.faults else 0.0)
        # the edge's estimate of a small cloud call: WAN round trip plus the cloud's service
        cloud_ms = float(rng.normal(30.0, 2.0)) + (200.0 if "slow_link" in self.faults else 0.0)
        body: dict[str, Any] = {
            "device_id": self.device_id,
            "agent_version": "t",
            "uptime_s": self.uptime,
            "models": [
                {
                    "name": "pm",
                    "version": "1",
                    "variant": "edge",
                    "state": "failed" if "model" in self.faults else "ready",
                }
            ],
            "store": {
                "backlog_records": self.backlog,
                "bytes_stored": int(9.5e8 if "disk" in self.faults else rng.uniform(2e8, 3e8)),
                "quota_bytes": int(1e9),
            },
            "inference": {"requests_edge": self.requests, "requests_failed": self.failed},
            "clock_skew_s": 120.0 if "clock" in self.faults else float(rng.normal(0.0, 0.2)),
            "model_health": [
                {
                    "name": "pm",
                    "version": "1",
                    "requests": self.requests,
                    "errors": self.failed,
                    "escalations": self.escalations,
                    "p99_ms": p99,
                }
            ],
            "estimates": {"edge_ms.pm": float(rng.normal(4.0, 0.3)), "cloud_ms.pm": cloud_ms},
            "drift": {
                "pm": {
                    "version": "1",
                    "window": 500,
                    "psi_max": 0.6 if "drift" in self.faults else float(rng.uniform(0.01, 0.08)),
                }
            },
        }
        return StatusReport.model_validate(body)
