"""The background loops' health as a table, for ``hybridai edge status`` and ``cloud health``."""

from __future__ import annotations

import time
from typing import Any

from rich.markup import escape
from rich.table import Table

_STYLE = {"backing_off": "yellow", "stopped": "red"}


def _ago(at: float | None) -> str:
    return "never" if at is None else f"{max(time.time() - at, 0.0):.0f} s ago"


def loops_table(loops: list[dict[str, Any]]) -> Table:
    """One row per loop: state, restarts, failures, last success and last error."""
    table = Table(title="background loops")
    for column in ("loop", "state", "restarts", "failures", "last success", "last error"):
        table.add_column(column)
    for loop in loops:
        state = loop["state"].replace("_", " ")
        if loop.get("retry_in_s") is not None:
            state += f" ({loop['retry_in_s']:.1f} s)"
        style = _STYLE.get(loop["state"])
        error = loop.get("last_error")
        table.add_row(
            loop["name"],
            f"[{style}]{state}[/]" if style else state,
            str(loop.get("restarts", 0)),
            str(loop.get("failures", 0)),
            _ago(loop.get("last_success_at")),
            f"{escape(error)} ({_ago(loop.get('last_error_at'))})" if error else "-",
        )
    return table
