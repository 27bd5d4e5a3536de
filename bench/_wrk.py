"""The external HTTP load generator every serving benchmark shares: Debian's ``wrk``.

A Python client saturates near the rate of the Python servers it measures, so a ratio of two
servers taken with it measures the client; ``wrk`` (C, epoll) does not. Each run gets a Lua
script: the request (method, headers, body, or a cycle of bodies read from files), and a
``done`` hook that prints the counts and the latency distribution as one JSON line. Responses
other than 2xx count as errors, which the caller refuses.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, '
    .. '"socket_errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "accepted": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), accepted_total()))
end
"""

# Sums the "accepted" counts of ingest answers (per thread; wrk gathers them in ``done``).
_ACCEPTED = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
accepted = 0
function response(status, headers, body)
  local n = body and string.match(body, '"accepted":%s*(%d+)')
  if n then accepted = accepted + tonumber(n) end
end
function accepted_total()
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("accepted") or 0) end
  return total
end
"""

_NO_ACCEPTED = "function accepted_total() return 0 end\n"


@dataclass(frozen=True)
class WrkRun:
    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    accepted: int  # ingest: records the server said it stored

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``http://lan:KEY@host:port`` -> (``http://host:port``, its basic auth header)."""
    parts = urlsplit(url)
    bare = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    if parts.username is None:
        return bare, {}
    pair = f"{parts.username}:{parts.password or ''}".encode()
    return bare, {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def run(
    url: str,
    *,
    body: bytes | None = None,
    bodies: list[Path] | None = None,
    headers: dict[str, str] | None = None,
    seconds: float = 5.0,
    connections: int = 8,
    threads: int = 1,
    count_accepted: bool = False,
) -> WrkRun:
    """POST ``body`` (or each of ``bodies`` in turn, per connection thread) to ``url``."""
    if not available():
        raise RuntimeError("wrk is not installed: apt-get install wrk (tests/system_packages.sh)")
    lines = ['wrk.method = "POST"']
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    with tempfile.TemporaryDirectory(prefix="hybridai-wrk-") as tmp:
        if bodies:
            files = ", ".join(_lua_string(str(p)) for p in bodies)
            lines.append(f"local files = {{{files}}}")
            lines.append(
                "local cache = {}\nlocal i = 0\n"
                "function request()\n"
                "  i = i % #files + 1\n"
                "  if cache[i] == nil then\n"
                '    local f = io.open(files[i], "rb"); cache[i] = f:read("*all"); f:close()\n'
                "  end\n"
                "  return wrk.format(nil, nil, nil, cache[i])\n"
                "end"
            )
        elif body is not None:
            path = Path(tmp) / "body"
            path.write_bytes(body)
            lines.append(
                f'local f = io.open({_lua_string(str(path))}, "rb")\n'
                "wrk.body = f:read('*all')\nf:close()"
            )
        lines.append(_ACCEPTED if count_accepted else _NO_ACCEPTED)
        lines.append(_DONE)
        script = Path(tmp) / "script.lua"
        script.write_text("\n".join(lines))
        duration = f"{max(1, round(seconds))}s"
        completed = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "-s", str(script), url],
            capture_output=True,  # stderr: lua errors, shown below
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    out = completed.stdout
    found = [line for line in out.splitlines() if line.startswith("WRK_JSON ")]
    if not found:
        raise RuntimeError(f"wrk printed no summary:\n{out}\n{completed.stderr}")
    data = json.loads(found[-1].removeprefix("WRK_JSON "))
    result = WrkRun(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        status_errors=data["status_errors"],
        socket_errors=data["socket_errors"],
        p50_ms=data["p50_us"] / 1000.0,
        p90_ms=data["p90_us"] / 1000.0,
        p99_ms=data["p99_us"] / 1000.0,
        accepted=data["accepted"],
    )
    if result.status_errors or result.socket_errors:
        raise RuntimeError(
            f"wrk saw {result.status_errors} non-2xx answers and {result.socket_errors} socket "
            f"errors out of {result.requests} requests at {url}"
        )
    return result
