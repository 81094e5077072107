"""`make bench-edge`: a real Varnish 7 (vmod_xkey) in front of the FastAPI
and Express apps of the HTTP case table, the apps and this process purging
it through `edge_purge`. Not a test: nothing here asserts a speed.

Reports, per framework, in one run:

- invalidation -> Varnish serving the new body: `invalidate_tags` in this
  process (another process of the fleet than the app's), then GETs through
  Varnish until the body changes; p50 / p99 / max over ROUNDS invalidations
  (default 100), with the default linger (50 ms) and with `linger_ms: 0`;
- requests/s for the same cached route served by Varnish and by the app
  itself (its L1), wrk -t1 -c32 for DURATION seconds (default 5), with the
  app's CPU time per request.

    python benches/edge/run.py [fastapi express fastify]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests/http"), str(ROOT / "benches/http")]

from run import CONNECTIONS, cpu_seconds, wrk  # noqa: E402  (benches/http/run.py)
from test_cases import REDIS_URL, Apps, free_port, request  # noqa: E402
from test_varnish import Varnish, served_by_varnish  # noqa: E402

from stratacache import Cache  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "100"))


def until_new_body(port: int, path: str, old: bytes) -> None:
    deadline = time.monotonic() + 10
    while request(port, "GET", path).body == old:
        if time.monotonic() > deadline:
            raise SystemExit(f"{path}: Varnish still serves the old body after 10 s")


def invalidation_times(apps: Apps, varnish: Varnish, linger_ms: int) -> list[float]:
    edge = {"kind": "varnish", "url": f"http://127.0.0.1:{varnish.port}/", "linger_ms": linger_ms}
    cache = Cache(namespace=apps.namespace, redis_url=REDIS_URL, edge_purge=[edge])
    out = []
    for i in range(ROUNDS):
        path = f"/edgetags?bench={linger_ms}-{i}"
        first = varnish.get(path)
        assert served_by_varnish(varnish.get(path))
        tag = first.headers["surrogate-key"].split(" ")[0]
        t0 = time.perf_counter()
        cache.invalidate_tags([tag])
        until_new_body(varnish.port, path, first.body)
        out.append((time.perf_counter() - t0) * 1000)
    assert cache.flush_edge_purges(10)
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def bench(framework: str) -> None:
    port = free_port()
    edges = [{"kind": "varnish", "url": f"http://127.0.0.1:{port}/"}]
    apps = Apps(framework, env={"STRATACACHE_TEST_EDGE_PURGE": json.dumps(edges)})
    try:
        varnish = Varnish(apps.ports[0], port)
        try:
            print(f"\n{framework} behind Varnish {varnish_version()}, wrk -t1 -c{CONNECTIONS}")
            for linger in (50, 0):
                ms = invalidation_times(apps, varnish, linger)
                print(
                    f"  invalidate_tags -> new body at Varnish, linger {linger:>2} ms, {ROUNDS} rounds: "
                    f"p50 {statistics.median(ms):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
                )
            route = "edgetags?load=1"
            varnish.get(f"/{route}")
            request(apps.ports[0], "GET", f"/{route}")
            pid = apps.procs[0].pid
            for who, p in (("Varnish", varnish.port), ("the app (L1 hit)", apps.ports[0])):
                before = cpu_seconds(pid)
                rate = wrk(p, route)
                cpu = cpu_seconds(pid) - before
                us = cpu / (rate * int(os.environ.get("DURATION", "5"))) * 1e6
                print(f"  served by {who:<16} {rate:>9,.0f} req/s, app CPU {us:.0f} us per request")
        finally:
            varnish.close()
    finally:
        apps.close()


def varnish_version() -> str:
    import subprocess

    out = subprocess.run(["/usr/sbin/varnishd", "-V"], capture_output=True, text=True).stderr
    return out.split("\n")[0].split("(")[1].split(" ")[0] if "(" in out else "?"


if __name__ == "__main__":
    for name in sys.argv[1:] or ["fastapi", "express"]:
        bench(name)
