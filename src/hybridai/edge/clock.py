"""How far this device's clock is from the cloud's, and what must wait while it is too far.

A device clock two days ahead makes every record look two days old (retention deletes the only
copy of restricted data) and every certificate look due (renewal every second); two days behind,
the cloud's certificate looks not yet valid. The cloud's clock is the reference: each answer's
HTTP ``Date`` header is one sample, corrected by half the round trip; the estimate is the median
of recent samples, so one slow answer does not move it. ``skew_s`` is local minus cloud
(positive: this device is ahead).
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
SAMPLES = 15  # the median of the last 15 answers
MAX_RTT_S = 10.0  # a slower answer says little about when the cloud stamped it
DATE_RESOLUTION_S = 0.5  # Date is stamped in whole seconds: on average half a second early
NTP_FIX = "fix NTP on this device (e.g. `timedatectl set-ntp true`, or check chrony/ntpd)"


def server_time(date_header: str | None) -> float | None:
    """The time in an HTTP ``Date`` header (RFC 9110), or None when absent or unreadable."""
    if not date_header:
        return None
    try:
        return parsedate_to_datetime(date_header).timestamp() + DATE_RESOLUTION_S
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def amount(seconds: float) -> str:
    """A duration for people: '2.0 days', '3.5 h', '12.0 min', '40 s'."""
    size = abs(seconds)
    if size >= 86400:
        return f"{size / 86400:.1f} days"
    if size >= 3600:
        return f"{size / 3600:.1f} h"
    if size >= 60:
        return f"{size / 60:.1f} min"
    return f"{size:.0f} s"


def describe_skew(skew_s: float) -> str:
    """The skew in words, e.g. 'this device's clock is 2.0 days ahead of the cloud's'."""
    direction = "ahead of" if skew_s > 0 else "behind"
    return f"this device's clock is {amount(skew_s)} {direction} the cloud's"


class ClockSkew:
    """The running estimate, and the hold it puts on time-driven destructive work."""

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._warned = False

    def observe(self, sent: float, received: float, cloud_time: float, told: bool = False) -> None:
        """One answer: sent and received by the local clock, stamped ``cloud_time`` by the cloud.

        ``told``: the caller reports the skew itself (no second log line for the same cause).
        """
        if received - sent > MAX_RTT_S:
            return
        self._samples.append((sent + received) / 2 - cloud_time)
        if told and self.too_far:
            self._warned = True
        self._log_change()

    @property
    def skew_s(self) -> float | None:
        """Local minus cloud time in seconds; None until the cloud has answered once."""
        return statistics.median(self._samples) if self._samples else None

    def cloud_time(self, now: float) -> float:
        """``now`` on the cloud's clock (``now`` itself until the skew is known)."""
        skew = self.skew_s
        return now if skew is None else now - skew

    @property
    def too_far(self) -> bool:
        skew = self.skew_s
        return skew is not None and abs(skew) > self.bound_s

    def hold(self) -> str | None:
        """Why time-driven deletion must wait now (None: it may run).

        It waits until the clock has been compared with the cloud's, and while it is more than
        the bound away: a wrong clock must never delete records that are the only copy.
        """
        skew = self.skew_s
        if skew is None:
            return "this device's clock has not yet been compared with the cloud's"
        if abs(skew) > self.bound_s:
            return (
                f"clock skew: {describe_skew(skew)} (more than {self.bound_s:.0f} s): retention "
                f"waits, certificate renewal follows the cloud's clock; {NTP_FIX}"
            )
        return None

    def _log_change(self) -> None:
        """Say it once when the skew goes beyond the bound, and once when it is back."""
        if self.too_far and not self._warned:
            self._warned = True
            assert self.skew_s is not None
            log.warning(
                "clock skew: %s; data retention waits and certificate renewal follows the "
                "cloud's clock until it is within %.0f s; %s",
                describe_skew(self.skew_s),
                self.bound_s,
                NTP_FIX,
            )
        elif self._warned and not self.too_far:
            self._warned = False
            log.warning("clock skew resolved: this device's clock agrees with the cloud's again")


class ClockCollector(Collector):
    """``hybridai_edge_clock_skew_seconds``: absent until the cloud has answered once."""

    def __init__(self, clock: ClockSkew) -> None:
        self._clock = clock

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        skew = self._clock.skew_s
        if skew is None:
            return
        gauge = GaugeMetricFamily(
            "hybridai_edge_clock_skew_seconds",
            "This device's clock minus the cloud's (median of recent answers' Date headers).",
        )
        gauge.add_metric([], skew)
        yield gauge
