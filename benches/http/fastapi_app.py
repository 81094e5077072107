"""One server process for `make bench-http`: FastAPI under uvicorn (one
worker) with the same ~1 KB JSON body on four routes: not cached
(/plain), stratacache with its L1 (/l1), stratacache with L1 off so every
hit reads Redis (/l2), and fastapi-cache2's in-memory backend (/peer).

    python fastapi_app.py PORT NAMESPACE REDIS_URL
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi_cache import FastAPICache
from fastapi_cache.backends.inmemory import InMemoryBackend
from fastapi_cache.decorator import cache

from stratacache import Cache
from stratacache.fastapi import cached, setup

port, ns, redis_url = int(sys.argv[1]), sys.argv[2], sys.argv[3]

# ~1 KB of JSON shaped like an API answer: four users.
BODY: dict[str, Any] = {
    "page": 1,
    "items": [
        {
            "id": i,
            "name": f"User {i}",
            "email": f"user{i}@example.com",
            "active": True,
            "score": 97.5,
            "tags": ["alpha", "beta", "gamma"],
            "created": "2026-01-02T03:04:05Z",
            "country": "GB",
            "plan": "pro",
            "visits": 1234,
        }
        for i in range(4)
    ],
}

# How many times each route's handler ran: 1 for a route that caches.
calls = {"plain": 0, "l1": 0, "l2": 0, "peer": 0}


def body(route: str) -> dict[str, Any]:
    calls[route] += 1
    return BODY


app = FastAPI()
l1 = Cache(namespace=ns)
l2 = Cache(namespace=ns + "-l2", redis_url=redis_url, l1=False)
setup(app, l1)
FastAPICache.init(InMemoryBackend(), prefix=ns)


@app.get("/plain")
async def plain() -> dict[str, Any]:
    return body("plain")


@app.get("/l1")
@cached(ttl=3600)
async def hit_l1() -> dict[str, Any]:
    return body("l1")


@app.get("/l2")
@cached(ttl=3600, cache=l2)
async def hit_l2() -> dict[str, Any]:
    return body("l2")


@app.get("/peer")
@cache(expire=3600)  # type: ignore[misc]
async def peer() -> dict[str, Any]:
    return body("peer")


@app.get("/calls")
async def handler_calls() -> dict[str, int]:
    return calls


if __name__ == "__main__":
    print("ready", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
