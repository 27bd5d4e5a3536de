"""Latency and bandwidth estimates from live traffic, as pure values updated by pure functions.

Every estimator is a frozen value: ``update`` returns a new one, so the router keeps the
current value in its own state and the simulator can replay exactly the same updates.

- ``Ewma``: the mean, quick to follow a shift, cheap.
- ``Window``: the last ``size`` samples, for quantiles (a p90 budget check is more honest than a
  mean when the tail is long). A sliding window rather than P² because links change: a
  cumulative estimator would take thousands of requests to forget a bad hour.
- ``Estimate``: both, for one signal.
- ``EdgeEstimate``: queue wait + service time at one node, per model.
- ``LinkEstimate``: RTT + bytes / bandwidth + cloud service time, per model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ewma:
    """Exponentially weighted moving average; ``value`` is None until the first sample."""

    alpha: float = 0.2
    value: float | None = None
    samples: int = 0

    def update(self, sample: float) -> Ewma:
        # Constructors, not ``dataclasses.replace``: this runs several times per request, live
        # and in the simulator, and ``replace`` costs as much as the rest of the update.
        if self.value is None:
            return Ewma(self.alpha, sample, 1)
        value = self.alpha * sample + (1.0 - self.alpha) * self.value
        return Ewma(self.alpha, value, self.samples + 1)


@dataclass(frozen=True)
class Window:
    """The most recent ``size`` samples, oldest first, for streaming quantiles."""

    size: int = 64
    samples: tuple[float, ...] = ()

    def update(self, sample: float) -> Window:
        kept = self.samples[-(self.size - 1) :] if self.size > 1 else ()
        return Window(self.size, (*kept, sample))

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1) by linear interpolation, None while empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, got {q}")
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Estimate:
    """One observed signal (a latency in ms, a bandwidth in bytes/s): its mean and its tail."""

    mean: Ewma = field(default_factory=Ewma)
    window: Window = field(default_factory=Window)

    def update(self, sample: float) -> Estimate:
        return Estimate(self.mean.update(sample), self.window.update(sample))

    @property
    def samples(self) -> int:
        return self.mean.samples

    def value(self, quantile: float | None = None) -> float | None:
        """The mean when ``quantile`` is None, else that quantile of the recent window."""
        return self.mean.value if quantile is None else self.window.quantile(quantile)


@dataclass(frozen=True)
class EdgeEstimate:
    """What one node knows of serving one model: service time and observed queue wait (ms)."""

    service_ms: Estimate = field(default_factory=Estimate)
    wait_ms: Estimate = field(default_factory=Estimate)

    def observe(self, service_ms: float, wait_ms: float = 0.0) -> EdgeEstimate:
        return EdgeEstimate(self.service_ms.update(service_ms), self.wait_ms.update(wait_ms))

    def predict_ms(
        self, queue_depth: int = 0, workers: int = 1, quantile: float | None = None
    ) -> float | None:
        """Queue wait (requests ahead * service time / workers) + own service time.

        None until the model has served once here: callers treat an unmeasured on-site model as
        free to try, which is how it gets measured.
        """
        service = self.service_ms.value(quantile)
        if service is None:
            return None
        ahead = max(queue_depth, 0) / max(workers, 1)
        return ahead * service + service


# A request this small is dominated by the round trip, so its network time measures the RTT;
# larger ones measure the bandwidth once the RTT is known.
RTT_PROBE_BYTES = 4096


@dataclass(frozen=True)
class LinkEstimate:
    """What the edge knows of reaching one cloud model: RTT, upload bandwidth, service time."""

    rtt_ms: Estimate = field(default_factory=Estimate)
    bandwidth_bps: Estimate = field(default_factory=Estimate)
    service_ms: Estimate = field(default_factory=Estimate)

    def observe(
        self, n_bytes: int, total_ms: float, service_ms: float | None = None
    ) -> LinkEstimate:
        """Fold in one finished cloud call.

        ``total_ms`` is what the edge measured end to end; ``service_ms`` is what the cloud
        reported it spent (the response's ``service_ms`` parameter), None if it did not say.
        The network share (total - service) is split into RTT (small requests) or transfer time
        (large requests, once an RTT is known) so that predictions scale with request size.
        """
        service = 0.0 if service_ms is None else min(max(service_ms, 0.0), total_ms)
        served = self.service_ms if service_ms is None else self.service_ms.update(service)
        network_ms = max(total_ms - service, 0.0)
        rtt = self.rtt_ms.value()
        # Faster than the RTT estimate: the RTT estimate is stale, not the bandwidth infinite.
        if n_bytes <= RTT_PROBE_BYTES or rtt is None or network_ms - rtt <= 0.0:
            return LinkEstimate(self.rtt_ms.update(network_ms), self.bandwidth_bps, served)
        bandwidth = n_bytes / ((network_ms - rtt) / 1e3)
        return LinkEstimate(self.rtt_ms, self.bandwidth_bps.update(bandwidth), served)

    def predict_ms(self, n_bytes: int, quantile: float | None = None) -> float | None:
        """RTT + bytes / bandwidth + cloud service time; None until an RTT is measured.

        An unmeasured bandwidth or service time counts as zero: the estimate grows more honest
        with traffic rather than refusing to exist. At a quantile the bandwidth is taken at the
        complementary quantile (slow tail of bandwidth = slow tail of latency).
        """
        rtt = self.rtt_ms.value(quantile)
        if rtt is None:
            return None
        service = self.service_ms.value(quantile) or 0.0
        bandwidth = self.bandwidth_bps.value(None if quantile is None else 1.0 - quantile)
        transfer = 0.0 if not bandwidth else max(n_bytes, 0) / bandwidth * 1e3
        return rtt + transfer + service
