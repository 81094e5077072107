"""Fail-safe, soft and hard timeouts, negative caching and warm-up through
the plain Python API, sync and asyncio, L1-only and tiered (Redis and
Cluster). Deterministic: loaders block on events, never on timing."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from conftest import CLUSTER, REDIS_URL, unique
from stratacache import Cache, LoaderTimeoutError, NoCache, Policy
from stratacache import exceptions as stratacache_errors

CONFIGS = {
    "l1": {},
    "redis": {"redis_url": REDIS_URL},
    "cluster": {"cluster": CLUSTER.split(",")},
}


@pytest.fixture(params=list(CONFIGS))
def cache(request: pytest.FixtureRequest, ns: str) -> Cache:
    return Cache(namespace=ns, op_timeout=5.0, connect_timeout=5.0, **CONFIGS[request.param])  # type: ignore[arg-type]


def make_stale(cache: Cache, key: str, value: Any) -> None:
    cache.set(key, value, 0.001, grace=60)
    time.sleep(0.005)  # past the 1 ms TTL, well within the grace
    assert cache.get(key) is None


def until(pred: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_fail_safe_serves_stale_when_the_loader_raises(cache: Cache) -> None:
    make_stale(cache, "k", "old")
    calls = []

    def failing() -> str:
        calls.append(1)
        raise ConnectionError("origin down")

    assert cache.get_or_set("k", failing, 60, fail_safe=True) == "old"
    # Throttled: the stale value is fresh again for a while, the failing
    # origin is not called again.
    assert cache.get_or_set("k", failing, 60, fail_safe=True) == "old"
    assert calls == [1]
    assert cache.stats()["fail_safe_served"] == 1
    # Without fail-safe (or without a stale value) the error reaches the caller.
    with pytest.raises(ConnectionError):
        cache.get_or_set("cold", failing, 60, fail_safe=True)
    make_stale(cache, "k2", "old")
    with pytest.raises(ConnectionError):
        cache.get_or_set("k2", failing, 60)


def test_soft_timeout_serves_stale_and_the_load_lands_later(cache: Cache) -> None:
    make_stale(cache, "k", "old")
    release = threading.Event()

    def slow() -> str:
        assert release.wait(10)
        return "new"

    started = time.monotonic()
    assert cache.get_or_set("k", slow, 60, fail_safe=True, soft_timeout=0.05) == "old"
    assert time.monotonic() - started < 5, "the caller did not wait for the slow loader"
    release.set()
    until(lambda: cache.get("k") == "new", "the slow load finished in the background and filled the cache")
    s = cache.stats()
    assert s["soft_timeouts"] == 1 and s["fail_safe_served"] >= 1


def test_hard_timeout_without_stale_raises_and_the_load_lands_later(cache: Cache) -> None:
    release = threading.Event()

    def slow() -> str:
        assert release.wait(10)
        return "late"

    with pytest.raises(LoaderTimeoutError) as ei:
        cache.get_or_set("k", slow, 60, hard_timeout=0.05)
    assert ei.value.code == "E_LOADER_TIMEOUT" and isinstance(ei.value, TimeoutError)
    release.set()
    until(lambda: cache.get("k") == "late", "the load finished in the background")
    assert cache.stats()["hard_timeouts"] == 1


async def test_async_fail_safe_and_timeouts(cache: Cache) -> None:
    make_stale(cache, "k", "old")
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "new"

    assert await cache.aget_or_set("k", slow, 60, fail_safe=True, soft_timeout=0.05) == "old"
    release.set()
    for _ in range(2000):
        if await cache.aget("k") == "new":
            break
        await asyncio.sleep(0.005)
    assert await cache.aget("k") == "new"

    async def failing() -> str:
        raise ConnectionError("down")

    make_stale(cache, "k3", "old3")
    assert await cache.aget_or_set("k3", failing, 60, fail_safe=True) == "old3"
    never = asyncio.Event()

    async def hangs() -> str:
        await never.wait()
        return "x"

    with pytest.raises(LoaderTimeoutError):
        await cache.aget_or_set("k4", hangs, 60, hard_timeout=0.05)
    never.set()


def test_negative_caching(cache: Cache) -> None:
    calls: list[str] = []

    def nothing() -> None:
        calls.append("none")
        return None

    # NoCache: handed out, never stored.
    assert cache.get_or_set("k", lambda: NoCache("tmp"), 60) == "tmp"
    assert cache.get("k") is None
    # none_ttl=0: a None result is not cached...
    assert cache.get_or_set("n", nothing, 60, none_ttl=0) is None
    assert cache.get_or_set("n", nothing, 60, none_ttl=0) is None
    assert calls == ["none", "none"]
    # ...by default it is cached like any value (Django semantics)...
    assert cache.get_or_set("m", nothing, 60) is None
    assert cache.get_or_set("m", nothing, 60) is None
    assert calls == ["none"] * 3
    # ...and none_ttl gives it a TTL of its own.
    assert cache.get_or_set("s", nothing, 60, none_ttl=0.001) is None
    time.sleep(0.005)
    assert cache.get_or_set("s", nothing, 60, none_ttl=0.001) is None
    assert calls == ["none"] * 5
    assert cache.stats()["not_cached"] == 3


def test_warm_loads_only_what_needs_it_in_one_call(cache: Cache) -> None:
    cache.set("have", "kept", 60)
    batches: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, str]:
        batches.append(sorted(keys))
        return {k: f"v-{k}" for k in keys if k != "gone"}

    assert cache.warm(["have", "a", "b", "gone"], load_many=load_many, ttl=60) == 2
    assert batches == [["a", "b", "gone"]]
    assert cache.get("a") == "v-a" and cache.get("have") == "kept" and cache.get("gone") is None
    assert cache.warm(["have", "a", "b"], load_many=load_many) == 0, "all fresh: nothing to load"
    assert cache.warm(["a"], lambda k: k.upper(), force=True) == 1
    assert cache.get("a") == "A"
    assert cache.stats()["warmed"] == 3
    with pytest.raises(TypeError):
        cache.warm(["x"])


async def test_awarm(cache: Cache) -> None:
    async def load_many(keys: list[str]) -> dict[str, int]:
        return {k: len(k) for k in keys}

    assert await cache.awarm(["x", "yy"], load_many=load_many) == 2
    assert await cache.aget("yy") == 2


def test_cache_level_policy_and_validation(ns: str) -> None:
    c = Cache(namespace=ns, policy=Policy(fail_safe=True, grace=60))
    make_stale(c, "k", "old")

    def failing() -> str:
        raise ConnectionError("down")

    assert c.get_or_set("k", failing, 60) == "old", "the cache's policy applies"
    with pytest.raises(ConnectionError):
        c.get_or_set("k2", failing, 60, fail_safe=False)
    with pytest.raises(ValueError):
        Policy(on_wait_timeout="retry")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Policy(soft_timeout=-1)
    with pytest.raises(ValueError):
        Policy(refresh_ahead=2.0)


def test_tags_invalidate_across_handles(cache: Cache) -> None:
    """Tags through the Python API; a second handle without L1 stands in for
    another process."""
    cache.set("p1", "one", 60, grace=60, tags=["product:1"])
    cache.set("p2", "two", 60, tags=["product:2"])
    calls: list[str] = []

    def load() -> str:
        calls.append("x")
        return "loaded"

    assert cache.get_or_set("g", load, 60, tags=["product:1"]) == "loaded"
    cache.invalidate_tags(["product:1"])
    assert cache.get("p1") is None and cache.get("p2") == "two"
    # Stale, not gone: an allow_stale caller gets the old value at once.
    assert cache.get_or_set("p1", lambda: "fresh", 60, allow_stale=True, grace=60) == "one"
    assert cache.get_or_set("g", load, 60, tags=["product:1"]) == "loaded"
    assert calls == ["x", "x"], "the tagged get_or_set entry was reloaded"
    assert cache.stats()["tag_invalidations"] == 1
    with pytest.raises(stratacache_errors.InvalidValueError):
        cache.invalidate_tags([""])


async def test_async_tags(cache: Cache) -> None:
    await cache.aset("a", 1, 60, tags=["t"])
    await cache.ainvalidate_tags(["t"])
    assert await cache.aget("a") is None


def test_none_ttl_infinite_caches_none_forever() -> None:
    import math

    c = Cache(namespace=unique("nonettl"))
    calls: list[int] = []

    def loader() -> None:
        calls.append(1)
        return None

    assert c.get_or_set("n", loader, 1, none_ttl=math.inf) is None
    assert c.get_or_set("n", loader, 1, none_ttl=math.inf) is None
    assert calls == [1]
