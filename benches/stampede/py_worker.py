"""One Python process of `make bench-stampede` (see run.py).

Usage: py_worker.py CONFIG_JSON. Runs `callers` concurrent callers (threads
for the Django-API contenders, asyncio tasks for cashews) against one key,
counts loader calls in Redis, prints one JSON line: the callers' latencies.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

CFG: dict[str, Any] = json.loads(sys.argv[1])
URL = CFG["redis"]
R = redis.Redis.from_url(URL)
CALLS = f"{CFG['run']}:calls"
KEY = f"{CFG['run']}:{CFG['scenario']}"
TTL = CFG["ttl_s"]
LOAD_S = CFG["load_s"]


def start_together() -> None:
    R.incr(f"{CFG['run']}:ready")
    while not R.exists(f"{CFG['run']}:go"):
        time.sleep(0.001)


def loader() -> dict[str, Any]:
    R.incr(CALLS)
    time.sleep(LOAD_S)  # the origin's latency
    return {"v": "x" * 200, "at": time.time()}


async def aloader() -> dict[str, Any]:
    R.incr(CALLS)
    await asyncio.sleep(LOAD_S)
    return {"v": "x" * 200, "at": time.time()}


def django_get_or_set(lib: str) -> Callable[[], Any]:
    import django
    from django.conf import settings

    backends: dict[str, dict[str, Any]] = {
        "django RedisCache": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": URL},
        "django-redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": URL},
        "stratacache": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": URL,
            # Stale-while-revalidate: at expiry the value is served stale at
            # once while one process refreshes it (one load per TTL period).
            "OPTIONS": {"NAMESPACE": f"st-{CFG['run']}", "STALE_WHILE_REVALIDATE": True, "GRACE": 60},
        },
    }
    settings.configure(SECRET_KEY="bench", CACHES={"default": backends[lib]})
    django.setup()
    from django.core.cache import cache

    return lambda: cache.get_or_set(KEY, loader, TTL)


def run_threads(call: Callable[[], Any]) -> list[float]:
    callers = CFG["callers"]
    lat: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(callers)

    def cold() -> None:
        barrier.wait()
        t = time.perf_counter()
        call()
        d = time.perf_counter() - t
        with lock:
            lat.append(d)

    def hot() -> None:
        barrier.wait()
        end = time.monotonic() + CFG["duration_s"]
        mine = []
        while time.monotonic() < end:
            t = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t)
            time.sleep(0.001)  # the rest of the request's work
        with lock:
            lat.extend(mine)

    target = cold if CFG["scenario"] == "cold" else hot
    if CFG["scenario"] == "hot":
        call()  # warm-up: the first load is not the scenario
    start_together()
    ts = [threading.Thread(target=target) for _ in range(callers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat


async def run_cashews(lib: str) -> list[float]:
    from cashews import Cache

    c = Cache()
    c.setup(URL, client_side=False)
    prefix = f"cw-{CFG['run']}"
    if lib == "cashews lock":

        @c(ttl=TTL, key=f"{prefix}:{KEY}", lock=True)
        async def get() -> dict[str, Any]:
            return await aloader()
    else:

        @c.early(ttl=TTL, early_ttl=TTL * 0.85, key=f"{prefix}:{KEY}")
        async def get() -> dict[str, Any]:
            return await aloader()

    lat: list[float] = []

    async def cold() -> None:
        t = time.perf_counter()
        await get()
        lat.append(time.perf_counter() - t)

    async def hot() -> None:
        end = time.monotonic() + CFG["duration_s"]
        while time.monotonic() < end:
            t = time.perf_counter()
            await get()
            lat.append(time.perf_counter() - t)
            await asyncio.sleep(0.001)

    if CFG["scenario"] == "hot":
        await get()
    await asyncio.get_running_loop().run_in_executor(None, start_together)
    target = cold if CFG["scenario"] == "cold" else hot
    await asyncio.gather(*(target() for _ in range(CFG["callers"])))
    return lat


def main() -> None:
    lib = CFG["lib"]
    lat = asyncio.run(run_cashews(lib)) if lib.startswith("cashews") else run_threads(django_get_or_set(lib))
    print(json.dumps({"lat": lat}))


if __name__ == "__main__":
    main()
