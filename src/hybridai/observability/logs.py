"""One logging setup for every process: time, level, component; JSON lines on request.

``HYBRIDAI_LOG_FORMAT=json`` makes each line a JSON object (``ts``, ``level``, ``component``,
``message``, and ``trace_id``, ``device``, ``model`` when known) for a log shipper; the
default is one readable line. ``HYBRIDAI_LOG_LEVEL`` sets the level (default info). The
trace id is the W3C ``traceparent``'s (``observability.trace``), the same at the edge and the
cloud for one request. Lines name fields, never record values: callers log what happened.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Literal

from hybridai.observability import trace

FORMAT_ENV = "HYBRIDAI_LOG_FORMAT"
LEVEL_ENV = "HYBRIDAI_LOG_LEVEL"
Format = Literal["text", "json"]
_HANDLER_NAME = "hybridai"
# LogRecord attributes; anything else a caller passes as ``extra=`` is a field of the line
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _Context(logging.Filter):
    """Adds the current trace id, device and model to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in trace.fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{text} [trace {trace_id}]" if trace_id else text


def log_format() -> Format:
    value = os.environ.get(FORMAT_ENV, "text").strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"{FORMAT_ENV}={value!r} is not a log format: use text or json")
    return "json" if value == "json" else "text"


def setup(level: str | None = None, fmt: Format | None = None) -> None:
    """Log to stderr in the chosen format; idempotent (a second call replaces the handler).

    uvicorn's own loggers go through the same handler (its access log stays off: the
    request log of ``observability.requests`` replaces it).
    """
    chosen = fmt or log_format()
    name = (level or os.environ.get(LEVEL_ENV) or "info").strip().upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(
            f"{LEVEL_ENV}={name.lower()!r} is not a log level: use debug, info, warning or error"
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler.addFilter(_Context())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore"):  # one line per call, with URLs: debug only
        logging.getLogger(noisy).setLevel(logging.WARNING)
