"""`make bench-py` (HTTP part): FastAPI response caching. A keep-alive client
sends sequential GETs to a uvicorn server on loopback: the same 200 B JSON
route not cached (the endpoint runs), cached with a hit from L1, and cached
with a hit from Redis (L1 disabled). Medians of interleaved rounds; ratios to
the uncached route. Not a test: nothing here asserts a speed."""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")

APP = """
import sys
import uvicorn
from fastapi import FastAPI
from stratacache import Cache
from stratacache.fastapi import cached, setup

app = FastAPI()
l1 = Cache(namespace=sys.argv[2])
l2 = Cache(namespace=sys.argv[2] + "-l2", redis_url=sys.argv[3], l1=False)
setup(app, l1)
BODY = {"id": 42, "payload": "x" * 200}

@app.get("/plain")
async def plain() -> dict[str, object]:
    return BODY

@app.get("/l1")
@cached(ttl=3600)
async def hit_l1() -> dict[str, object]:
    return BODY

@app.get("/l2")
@cached(ttl=3600, cache=l2)
async def hit_l2() -> dict[str, object]:
    return BODY

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ns = f"bench-http-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen([sys.executable, "-c", APP, str(port), ns, REDIS_URL])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        deadline = time.monotonic() + 30
        while True:
            try:
                conn.request("GET", "/plain")
                conn.getresponse().read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the app never answered"
                time.sleep(0.05)
                conn = http.client.HTTPConnection("127.0.0.1", port)

        def get(path: str) -> None:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status == 200

        rows = [("fastapi, not cached (endpoint runs)", "/plain"), ("fastapi cached, HIT from L1", "/l1"),
                ("fastapi cached, HIT from Redis (L1 off)", "/l2")]  # fmt: skip
        for _, path in rows:
            for _ in range(300):
                get(path)
        samples: dict[str, list[float]] = {name: [] for name, _ in rows}
        for _ in range(9):
            for name, path in rows:
                t0 = time.perf_counter()
                for _ in range(300):
                    get(path)
                samples[name].append((time.perf_counter() - t0) / 300 * 1e6)
        base = statistics.median(samples[rows[0][0]])
        print("\nHTTP GET, 200 B JSON, keep-alive, sequential (uvicorn): median of 9 rounds")
        for name, _ in rows:
            us = statistics.median(samples[name])
            print(f"  {name:<44} {us:9.2f} µs   {us / base:.2f}x of the uncached route")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
