"""`make bench-http`: cached HTTP responses in requests/s with wrk, beside
the uncached route and each framework's in-memory peer, in one run. Not a
test: nothing here asserts a speed.

One server process per framework (FastAPI under uvicorn, Express 5,
Fastify 5), each serving the same ~1 KB JSON body on every route:

- ``/plain``  not cached: the handler runs every time;
- ``/l1``     stratacache, a hit from its L1;
- ``/l2``     stratacache with L1 off: every hit reads Redis;
- ``/peer``   fastapi-cache2 (in-memory) / apicache / fastify-lcache;
- ``/peer2``  route-cache (Express only).

wrk runs CONNECTIONS keep-alive connections (default 32) on one thread for
DURATION seconds (default 5) per route; ROUNDS rounds (default 3) rotate
the order of the routes, and the median is reported with the server's CPU
time per request (from /proc) and each handler's call count (1 for a route
that caches).

    python benches/http/run.py [fastapi express fastify]
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
DURATION = int(os.environ.get("DURATION", "5"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TICKS = os.sysconf("SC_CLK_TCK")

APPS = {
    "fastapi": (
        [sys.executable, str(ROOT / "benches/http/fastapi_app.py")],
        ["plain", "l1", "l2", "peer"],
        {"peer": "fastapi-cache2 (in-memory)"},
    ),
    "express": (
        ["node", str(ROOT / "benches/http/node_app.js"), "express"],
        ["plain", "l1", "l2", "peer", "peer2"],
        {"peer": "apicache (memory)", "peer2": "route-cache (memory)"},
    ),
    "fastify": (
        ["node", str(ROOT / "benches/http/node_app.js"), "fastify"],
        ["plain", "l1", "l2", "peer"],
        {"peer": "fastify-lcache"},
    ),
}
NAMES = {
    "plain": "not cached (handler runs)",
    "l1": "stratacache, HIT from L1",
    "l2": "stratacache, HIT from Redis (l1: false)",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(port: int, route: str) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s", f"http://127.0.0.1:{port}/{route}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        raise SystemExit(f"wrk saw errors on /{route}: {errors.group(0)}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{out}")
    return float(match.group(1))


def bench(name: str) -> None:
    cmd, routes, peers = APPS[name]
    port = free_port()
    ns = f"bench-http-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen([*cmd, str(port), ns, REDIS_URL])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, plain = get(port, "/plain")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name}: the server did not start") from None
                time.sleep(0.1)
        for route in routes:  # fill the caches; every route answers the same body
            for _ in range(3):
                status, body = get(port, f"/{route}")
                if status != 200 or json.loads(body) != json.loads(plain):
                    raise SystemExit(f"{name} /{route}: status {status}, body {body[:100]!r}")
        rates: dict[str, list[float]] = {r: [] for r in routes}
        cpu: dict[str, list[float]] = {r: [] for r in routes}
        for k in range(ROUNDS):
            for route in routes[k % len(routes) :] + routes[: k % len(routes)]:
                c0 = cpu_seconds(server.pid)
                rate = wrk(port, route)
                rates[route].append(rate)
                cpu[route].append((cpu_seconds(server.pid) - c0) / (rate * DURATION) * 1e6)
        status, counts = get(port, "/calls")
        calls = json.loads(counts)
    finally:
        server.terminate()
        server.wait(timeout=30)
    base = statistics.median(rates["plain"])
    print(f"\n{name}: ~1 KB JSON, wrk -t1 -c{CONNECTIONS} -d{DURATION}s, median of {ROUNDS} rounds")
    print("| route | req/s | vs not cached | server CPU µs/req | handler calls |\n|---|---|---|---|---|")
    for route in routes:
        rate = statistics.median(rates[route])
        label = NAMES.get(route) or peers[route]
        print(
            f"| {label} | {rate:,.0f} | {rate / base:.2f}x | {statistics.median(cpu[route]):.0f} | {calls[route]:,} |",
            flush=True,
        )


def main() -> None:
    if shutil.which("wrk") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "wrk"],
                check=True,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        else:
            raise SystemExit("make bench-http needs wrk: apt-get install wrk (or brew install wrk)")
    for name in sys.argv[1:] or list(APPS):
        bench(name)


if __name__ == "__main__":
    main()
