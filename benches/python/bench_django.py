"""`make bench-py`: stratacache through the Django API beside its peers, in
one run, reported as ratios (docs/benchmarks.md). Not a test: nothing here
asserts a speed.

Values are shaped like what API servers cache: *user* (a 10-field dict,
~210 B pickled), *page* (8 users and 9,000 characters of HTML, ~10 KB), a
dataclass and a Django model instance; the old one-long-string value is
kept as one extra row. Every Redis peer runs with its fast parser (redis-py
with hiredis). Throughput rows run 1, 16 and 64 requests in flight (threads).

Needs Redis at $REDIS_URL and the release build of the native module
(the Makefile target does both).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import pickle
import statistics
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

import django
from django.conf import settings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
RUN = os.urandom(4).hex()

settings.configure(
    SECRET_KEY="bench",
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    CACHES={
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"b{RUN}"},
        "strata_l1": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"NAMESPACE": f"bench-{RUN}"},
        },
        "strata_shared": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"NAMESPACE": f"bench-shared-{RUN}", "COPY": False},
        },
        "strata_l1_only": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": "",
            "OPTIONS": {"NAMESPACE": f"bench-only-{RUN}"},
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
    """The old benchmark value: one long string (kept as one extra row)."""
    return {"id": 42, "payload": "x" * size}


def user(i: int = 42) -> dict[str, Any]:
    return {
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


def page() -> dict[str, Any]:
    return {"page": 1, "total": 8, "items": [user(i) for i in range(8)], "html": "<p>" + "x" * 8993 + "</p>"}


@dataclasses.dataclass
class UserRecord:
    id: int
    name: str
    email: str
    active: bool
    score: float
    tags: list[str]
    created: str
    country: str
    plan: str
    visits: int


def model_instance() -> Any:
    """An unsaved `django.contrib.auth` User: what a view caches as-is."""
    from django.contrib.auth.models import User

    return User(id=42, username="ada", email="ada@example.com", first_name="Ada", last_name="Lovelace")


PAYLOADS: dict[str, Callable[[], Any]] = {"user": user, "page": page}


def l1_rows(v: dict[str, Any]) -> list[tuple[str, float]]:
    rows = []
    for alias in ("locmem", "strata_l1", "strata_shared"):
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


def l1_hits() -> None:
    for name, make in PAYLOADS.items():
        table(f"L1 hit get, {name}", l1_rows(make()), "django api: locmem")
    table("L1 hit get, old payload (one 200-char string)", l1_rows(value(200)), "django api: locmem")
    # Instances of user classes are unpickled per hit, unless shared
    # (strata_shared: COPY False).
    for name, obj in (("dataclass", UserRecord(**user())), ("Django model instance", model_instance())):
        rows = []
        for alias in ("locmem", "strata_l1", "strata_shared"):
            c = caches[alias]
            key = "hot-" + name.replace(" ", "-")  # a space would make Django warn on every call
            c.set(key, obj, 3600)
            rows.append((f"django api: {alias}", per_op(lambda c=c, k=key: c.get(k), 20_000)))
        table(f"L1 hit get, {name} (unpickled per hit but shared)", rows, "django api: locmem")


def l1_sets() -> None:
    for name, make in PAYLOADS.items():
        v = make()
        rows = []
        for alias in ("locmem", "strata_l1_only"):
            c = caches[alias]
            rows.append((f"django api: {alias}", per_op(lambda c=c, v=v: c.set("w", v, 3600), 20_000)))
        table(f"L1-only set, {name}", rows, "django api: locmem")


def l2_hits() -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    for name, make in PAYLOADS.items():
        v = make()
        rows = []
        for alias in ("strata_l2", "django_redis_builtin", "django_redis"):
            c = caches[alias]
            c.set("l2key", v, 3600)
            rows.append((f"django api: {alias}", per_op(lambda c=c: c.get("l2key"), 2_000)))
        raw.set(f"raw-{RUN}", pickle.dumps(v, pickle.HIGHEST_PROTOCOL))
        rows.append(("raw redis-py GET (hiredis)", per_op(lambda: raw.get(f"raw-{RUN}"), 2_000)))
        table(f"L2 hit get (L1 disabled), {name}", rows, "raw redis-py GET (hiredis)")


def l2_sets() -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    for name, make in PAYLOADS.items():
        v = make()
        data = pickle.dumps(v, pickle.HIGHEST_PROTOCOL)
        rows = []
        for alias in ("strata_l2", "django_redis_builtin", "django_redis"):
            c = caches[alias]
            rows.append((f"django api: {alias}", per_op(lambda c=c, v=v: c.set("l2w", v, 3600), 2_000)))
        rows.append(("raw redis-py SET EX (hiredis)", per_op(lambda d=data: raw.set(f"raww-{RUN}", d, ex=3600), 2_000)))
        # What a cache client cannot avoid on top: serializing the value.
        rows.append(
            (
                "raw pickle.dumps + SET EX",
                per_op(lambda v=v: raw.set(f"raww-{RUN}", pickle.dumps(v, pickle.HIGHEST_PROTOCOL), ex=3600), 2_000),
            )
        )
        table(f"L2 set, {name} (bus publish included for stratacache)", rows, "raw redis-py SET EX (hiredis)")


def get_many() -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    keys = [f"m{i}" for i in range(100)]
    rows = []
    for alias in ("strata_l2", "django_redis_builtin", "django_redis"):
        c = caches[alias]
        c.set_many({k: user(i) for i, k in enumerate(keys)}, 3600)
        rows.append((f"django api: {alias}", per_op(lambda c=c: c.get_many(keys), 300)))
    raw_keys = [f"rawm-{RUN}-{k}" for k in keys]
    raw.mset({k: pickle.dumps(user(i), pickle.HIGHEST_PROTOCOL) for i, k in enumerate(raw_keys)})
    rows.append(("raw redis-py MGET (hiredis)", per_op(lambda: raw.mget(raw_keys), 300)))
    # What a cache client cannot avoid on top: decoding the 100 values.
    rows.append(("raw MGET + pickle.loads of each", per_op(lambda: [pickle.loads(b) for b in raw.mget(raw_keys)], 300)))
    table("get_many of 100 keys from L2, user", rows, "raw redis-py MGET (hiredis)")


def in_flight(fn: Callable[[], Any], threads: int, seconds: float = 1.5) -> float:
    """Calls per second with `threads` callers in flight."""
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        barrier.wait()
        n = 0
        while not stop.is_set():
            fn()
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def throughput() -> None:
    """L2 reads of the user value with 1, 16 and 64 requests in flight."""
    v = user()
    pool = redis.ConnectionPool.from_url(REDIS_URL, max_connections=128)
    raw = redis.Redis(connection_pool=pool)
    raw.set(f"rawt-{RUN}", pickle.dumps(v, pickle.HIGHEST_PROTOCOL))
    contenders: list[tuple[str, Callable[[], Any]]] = [
        ("raw redis-py GET (hiredis, pool)", lambda: raw.get(f"rawt-{RUN}"))
    ]
    for alias in ("strata_l2", "django_redis"):
        c = caches[alias]
        c.set("l2t", v, 3600)
        contenders.append((f"django api: {alias}", lambda c=c: c.get("l2t")))
    print("\nL2 hit get throughput, user, one hot key (L1 disabled), calls/s; ratio to raw redis-py")
    print("  (stratacache coalesces concurrent reads of one key into one GET; the others do not)")
    in_flight_rows(contenders)
    # Distinct keys: every call reads the next of 1,000 keys, so nothing
    # is coalesced.
    keys = [f"l2d-{i}" for i in range(1000)]
    blob = pickle.dumps(v, pickle.HIGHEST_PROTOCOL)
    raw.mset({f"rawd-{RUN}-{k}": blob for k in keys})
    turn = itertools.count()
    distinct: list[tuple[str, Callable[[], Any]]] = [
        ("raw redis-py GET (hiredis, pool)", lambda: raw.get(f"rawd-{RUN}-{keys[next(turn) % 1000]}"))
    ]
    for alias in ("strata_l2", "django_redis"):
        c = caches[alias]
        c.set_many(dict.fromkeys(keys, v), 3600)
        distinct.append((f"django api: {alias}", lambda c=c: c.get(keys[next(turn) % 1000])))
    print("\nL2 hit get throughput, user, 1,000 distinct keys in turn (L1 disabled), calls/s; ratio to raw redis-py")
    in_flight_rows(distinct)


def in_flight_rows(contenders: list[tuple[str, Callable[[], Any]]]) -> None:
    """One line per 1, 16 and 64 callers in flight; the first contender is the reference."""
    for n in (1, 16, 64):
        rates = [(name, in_flight(fn, n)) for name, fn in contenders]
        ref = rates[0][1]
        cells = "   ".join(f"{name} {r:,.0f} ({r / ref:.2f}x)" for name, r in rates[1:])
        print(f"  {n:2d} in flight: raw {ref:,.0f}/s   {cells}")


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
        return user()

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
    from redis.utils import HIREDIS_AVAILABLE

    import stratacache

    print(
        f"stratacache {stratacache.__version__}, Django {django.get_version()}, redis-py {redis.__version__}"
        f" (hiredis {'on' if HIREDIS_AVAILABLE else 'OFF'}), Redis at {REDIS_URL}"
    )
    l1_hits()
    l1_sets()
    l2_hits()
    l2_sets()
    get_many()
    throughput()
    stampede()
    caches["strata_l1"].clear()
