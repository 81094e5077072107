"""`make bench-py`: stratacache through the Django API beside its peers, in
one run, reported as ratios (docs/benchmarks.md). Not a test: nothing here
asserts a speed.

Needs Redis at $REDIS_URL and the release build of the native module
(the Makefile target does both).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import threading
import time
import timeit
from typing import Any, Callable

import django
from django.conf import settings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
RUN = os.urandom(4).hex()

settings.configure(
    SECRET_KEY="bench",
    CACHES={
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"b{RUN}"},
        "strata_l1": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"NAMESPACE": f"bench-{RUN}"},
        },
        "strata_l2": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"NAMESPACE": f"bench-{RUN}", "L1": False},
        },
        "django_redis_builtin": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
        "django_redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"CONNECTION_POOL_KWARGS": {"max_connections": 1000}},
        },
    },
)
django.setup()

import cachetools  # noqa: E402
import redis  # noqa: E402
from cashews import Cache as CashewsCache  # noqa: E402
from django.core.cache import caches  # noqa: E402


def per_op(fn: Callable[[], Any], number: int, repeat: int = 5) -> float:
    """Best-of-`repeat` seconds per call."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def fmt(s: float) -> str:
    return f"{s * 1e6:8.2f} µs"


def table(title: str, rows: list[tuple[str, float]], base: str) -> None:
    ref = dict(rows)[base]
    print(f"\n{title}")
    for name, t in rows:
        print(f"  {name:34s} {fmt(t)}   {t / ref:5.2f}x of {base}")


def value(size: int) -> dict[str, Any]:
    return {"id": 42, "payload": "x" * size}


def l1_rows(v: dict[str, Any]) -> list[tuple[str, float]]:
    rows = []
    for alias in ("locmem", "strata_l1"):
        c = caches[alias]
        c.set("hot", v, 3600)
        rows.append((f"django api: {alias}", per_op(lambda c=c: c.get("hot"), 20_000)))
    tc: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=10_000, ttl=3600)
    tc["hot"] = v
    rows.append(("cachetools TTLCache (no copy, raw)", per_op(lambda: tc.get("hot"), 50_000)))

    async def cashews_per_op() -> float:
        cw = CashewsCache()
        cw.setup("mem://")
        await cw.set("hot", v, expire=3600)
        n = 20_000
        t0 = time.perf_counter()
        for _ in range(n):
            await cw.get("hot")
        return (time.perf_counter() - t0) / n

    rows.append(("cashews mem:// (async)", asyncio.run(cashews_per_op())))
    return rows


@dataclasses.dataclass
class Record:
    id: int
    payload: str


def l1_hits() -> None:
    for size in (200, 10_240):
        table(f"L1 hit get, {size} B value", l1_rows(value(size)), "django api: locmem")
    # An instance of a user class is never kept decoded: unpickled per hit.
    rows = []
    for alias in ("locmem", "strata_l1"):
        c = caches[alias]
        c.set("hot-record", Record(42, "x" * 200), 3600)
        rows.append((f"django api: {alias}", per_op(lambda c=c: c.get("hot-record"), 20_000)))
    table("L1 hit get, 200 B dataclass instance (unpickled per hit)", rows, "django api: locmem")


def l2_hits() -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    for size in (200, 10_240):
        v = value(size)
        rows = []
        for alias in ("strata_l2", "django_redis_builtin", "django_redis"):
            c = caches[alias]
            c.set("l2key", v, 3600)
            rows.append((f"django api: {alias}", per_op(lambda c=c: c.get("l2key"), 2_000)))
        raw.set(f"raw-{RUN}", b"x" * (size + 20))
        rows.append(("raw redis-py GET", per_op(lambda: raw.get(f"raw-{RUN}"), 2_000)))
        table(f"L2 hit get (L1 disabled), {size} B value", rows, "raw redis-py GET")


def get_many() -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    keys = [f"m{i}" for i in range(100)]
    rows = []
    for alias in ("strata_l2", "django_redis_builtin", "django_redis"):
        c = caches[alias]
        c.set_many({k: value(200) for k in keys}, 3600)
        rows.append((f"django api: {alias}", per_op(lambda c=c: c.get_many(keys), 300)))
    raw_keys = [f"rawm-{RUN}-{k}" for k in keys]
    raw.mset({k: b"x" * 220 for k in raw_keys})
    rows.append(("raw redis-py MGET", per_op(lambda: raw.mget(raw_keys), 300)))
    table("get_many of 100 keys from L2 (200 B values)", rows, "raw redis-py MGET")


def stampede_one(alias: str) -> None:
    c = caches[alias]
    key = f"cold-{RUN}-{alias}"
    calls = errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(200)
    lat: list[float] = []

    def loader() -> dict[str, Any]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)
        return value(200)

    def worker() -> None:
        nonlocal errors
        barrier.wait()
        t0 = time.perf_counter()
        try:
            c.get_or_set(key, loader, 60)
        except Exception:
            with lock:
                errors += 1
        with lock:
            lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1]
    print(
        f"  {alias:34s} loader calls {calls:4d}   p50 {statistics.median(lat) * 1e3:7.1f} ms"
        f"   p99 {p99 * 1e3:7.1f} ms   errors {errors}"
    )


def stampede() -> None:
    print("\nCold key, 200 threads, 50 ms loader (get_or_set)")
    for alias in ("locmem", "django_redis", "strata_l1"):
        stampede_one(alias)


if __name__ == "__main__":
    import stratacache

    print(f"stratacache {stratacache.__version__}, Django {django.get_version()}, Redis at {REDIS_URL}")
    l1_hits()
    l2_hits()
    get_many()
    stampede()
    caches["strata_l1"].clear()
