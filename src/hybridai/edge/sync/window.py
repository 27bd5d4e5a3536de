"""The time-of-day window in which bulk sync may run (e.g. at night, on a metered link).

``"22:00-06:00"`` in the device's local time; a window may wrap midnight; several may be
given, comma-separated. Outside every window only high-priority streams (alerts) sync: an
alert does not wait for the night. A batch already cut is resent whatever the time, since
batches must reach the lake in the order they were cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hybridai.protocol.edge_settings import window_spans


@dataclass(frozen=True)
class SyncWindow:
    spans: tuple[tuple[int, int], ...]  # (start, end) minutes of the day; end may be < start

    def open_at(self, minute_of_day: int) -> bool:
        for start, end in self.spans:
            if start <= end and start <= minute_of_day < end:
                return True
            if start > end and (minute_of_day >= start or minute_of_day < end):
                return True
        return False

    def open_now(self, now: float) -> bool:
        t = time.localtime(now)
        return self.open_at(t.tm_hour * 60 + t.tm_min)


def parse_window(text: str | None) -> SyncWindow | None:
    """``"HH:MM-HH:MM[,HH:MM-HH:MM...]"``; None or empty means sync at any time."""
    if text is None or not text.strip():
        return None
    return SyncWindow(window_spans(text))
