"""What mTLS (TLS 1.3, client certificate) costs over plain HTTP on loopback.

Two servers built by ``hybridai.link.transport`` (the same uvicorn, protocol and TLS contexts
the cloud uses) run in their own processes with a trivial app; the client is httpx with the
platform's client contexts, presenting a device certificate. Per mode, two figures:

- new connection per request (TCP + TLS 1.3 handshake with client certificate + request);
- keep-alive (one connection, requests one after another).

p50 latency per round, median over rounds. Usage: python bench/tls.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, percentile, show, write

from hybridai.demo.launcher import free_port
from hybridai.link import pki
from hybridai.link.tls import ServerTls, client_context
from hybridai.link.transport import serve


async def ping(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[Any], Awaitable[None]],
) -> None:
    """A tiny JSON answer that names the client certificate, if any (proves mTLS is on)."""
    if scope["type"] != "http":
        return
    tls = (scope.get("extensions") or {}).get("tls") or {}
    body = b'{"client": "%s"}' % str(tls.get("client_cert_name")).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def make_pki(root: Path) -> tuple[ServerTls, Path, Path]:
    paths, _ = pki.init_cloud_pki(root, [], time.time())
    ca, ca_key = paths.load_ca()
    key = pki.new_key()
    cert = pki.sign_device(ca, ca_key, pki.device_csr(key, "bench"), "bench", time.time(), 3600)
    pki.write_private(root / "device.key", pki.key_pem(key))
    pki.write_public(root / "device.crt", pki.cert_pem(cert).encode())
    tls = ServerTls(paths.server_cert, paths.server_key, paths.ca_cert)
    return tls, root / "device.crt", root / "device.key"


def start(port: int, pki_root: Path | None) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--serve", str(port)]
    if pki_root is not None:
        args += ["--pki", str(pki_root)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_up(url: str, verify: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, verify=verify, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def p50_ms(url: str, verify: Any, n: int, keepalive: bool) -> float:
    limits = httpx.Limits(max_keepalive_connections=8 if keepalive else 0)
    times = []
    with httpx.Client(verify=verify, limits=limits, timeout=10) as http:
        http.get(url).raise_for_status()  # warm-up (and, with keep-alive, the one handshake)
        for _ in range(n):
            t0 = time.perf_counter()
            http.get(url).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return percentile(times, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, a few seconds")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:  # child process: one server
        own = None
        if args.pki is not None:
            own = ServerTls(args.pki / "server.crt", args.pki / "server.key", args.pki / "ca.crt")
        serve(ping, "127.0.0.1", args.serve, tls=own)
        return

    rounds, n = (3, 100) if args.quick else (7, 500)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tls, cert, key = make_pki(root)
        mtls_port, http_port = free_port(), free_port()
        children = [start(mtls_port, root), start(http_port, None)]
        try:
            mtls_url = f"https://127.0.0.1:{mtls_port}/"
            http_url = f"http://127.0.0.1:{http_port}/"
            context = client_context(tls.ca_file, cert, key)
            wait_up(mtls_url, context)
            wait_up(http_url, True)
            assert httpx.get(mtls_url, verify=context).json() == {"client": "CN=bench"}
            results: dict[str, list[float]] = {}
            for _ in range(rounds):  # interleaved, so drift hits every mode alike
                for name, url, verify in (("mtls", mtls_url, context), ("http", http_url, True)):
                    for mode, keepalive in (("new_conn", False), ("keepalive", True)):
                        key_ = f"{name}_{mode}_p50_ms"
                        results.setdefault(key_, []).append(p50_ms(url, verify, n, keepalive))
        finally:
            for child in children:
                child.terminate()
                child.wait(10)

    m = {k: round(median(v), 3) for k, v in results.items()}
    metrics = {
        "mtls_new_conn_p50_ms": m["mtls_new_conn_p50_ms"],
        "http_new_conn_p50_ms": m["http_new_conn_p50_ms"],
        "new_conn_ratio": round(m["mtls_new_conn_p50_ms"] / m["http_new_conn_p50_ms"], 2),
        "mtls_keepalive_p50_ms": m["mtls_keepalive_p50_ms"],
        "http_keepalive_p50_ms": m["http_keepalive_p50_ms"],
        "keepalive_ratio": round(m["mtls_keepalive_p50_ms"] / m["http_keepalive_p50_ms"], 2),
    }
    notes = {
        "rounds": rounds,
        "requests_per_round": n,
        "tls": "TLS 1.3 only, ECDSA P-256 server and client certificates, CERT_OPTIONAL + verify",
        "server": "uvicorn via hybridai.link.transport.serve, own process, trivial ASGI app",
        "client": "httpx, sequential; new_conn = no keep-alive (one handshake per request)",
    }
    show("bench/tls" + (" (quick)" if args.quick else ""), metrics)
    print(write("tls", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
