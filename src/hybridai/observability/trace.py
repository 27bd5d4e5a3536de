"""The request id of the work in progress: a W3C ``traceparent`` carried from edge to cloud.

The edge starts a trace where a request enters (or continues the caller's), every call it
makes to the cloud or a peer forwards it, and the cloud continues it: one trace id names one
request in the logs of every process it passed through. Context variables, so each asyncio
task and each worker thread (starlette copies the context) sees its own request's ids; the
device and model of the work ride along for the logs.
"""

from __future__ import annotations

import contextvars
import os
import random
import re
from dataclasses import dataclass

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class Span:
    trace_id: str  # 32 hex digits, shared by every process the request passes through
    span_id: str  # 16 hex digits, this process's part

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


# Ids name requests, they guard nothing: a PRNG seeded from the OS is unique enough and far
# cheaper per request than the OS's random bytes.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)  # a forked child must not repeat its parent's


def _hex_id(bits: int) -> str:
    return f"{_ids.getrandbits(bits) or 1:0{bits // 4}x}"  # all zeros is an invalid id


_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar("hybridai_span", default=None)
_device: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hybridai_device", default=None
)
_model: contextvars.ContextVar[str | None] = contextvars.ContextVar("hybridai_model", default=None)


def parse(header: str | None) -> str | None:
    """The trace id of a valid ``traceparent`` (version 00, ids not all zeros), else None."""
    match = _TRACEPARENT.match((header or "").strip().lower())
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1)


def begin(header: str | None = None) -> Span:
    """Continue the caller's trace (a valid ``traceparent``) or start one; a new span either way."""
    trace_id = parse(header) or _hex_id(128)
    span = Span(trace_id, _hex_id(64))
    _span.set(span)
    return span


def current() -> Span | None:
    return _span.get()


def outgoing() -> dict[str, str]:
    """The header that continues the current trace in a call this process makes ({} if none)."""
    span = _span.get()
    return {HEADER: span.traceparent} if span is not None else {}


_process_device: list[str] = []  # the edge's own id, once known: every log line names it


def set_device(device_id: str | None) -> None:
    """The device the current request comes from (at the cloud: its certificate's)."""
    _device.set(device_id)


def set_process_device(device_id: str) -> None:
    """Name the edge ``device_id`` this process is in every log line, requests or not."""
    _process_device[:] = [device_id]


def set_model(model: str | None) -> None:
    _model.set(model)


def fields() -> dict[str, str]:
    """Trace id, device and model of the current work, for a log line (only those known)."""
    found: dict[str, str] = {}
    span = _span.get()
    if span is not None:
        found["trace_id"] = span.trace_id
    device, model = _device.get() or next(iter(_process_device), None), _model.get()
    if device:
        found["device"] = device
    if model:
        found["model"] = model
    return found
