"""The plain Python API (stratacache.Cache), sync and asyncio twins, in
L1-only mode and tiered on Redis and on Redis Cluster."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

import stratacache
from conftest import CLUSTER, REDIS_URL, unique
from stratacache import Cache

CONFIGS = {
    "l1": {},
    "redis": {"redis_url": REDIS_URL},
    "cluster": {"cluster": CLUSTER.split(",")},
}


@pytest.fixture(params=list(CONFIGS))
def cfg(request: pytest.FixtureRequest) -> dict[str, object]:
    return {"op_timeout": 5.0, "connect_timeout": 5.0, **CONFIGS[request.param]}


@pytest.fixture
def cache(cfg: dict[str, object], ns: str) -> Cache:
    return Cache(namespace=ns, **cfg)  # type: ignore[arg-type]


def other_process_view(cache: Cache, cfg: dict[str, object], **kw: object) -> Cache:
    """A handle without L1 on the same data (what another process sees)."""
    if "redis_url" not in cfg and "cluster" not in cfg:
        return cache
    return Cache(namespace=cache.namespace, l1=False, **cfg, **kw)  # type: ignore[arg-type]


def test_values_round_trip_and_are_copies(cache: Cache, cfg: dict[str, object]) -> None:
    value = {"name": "Ada", "tags": ["x"], "n": 1.5, "b": b"\x00\xff"}
    cache.set("user:1", value)
    got = cache.get("user:1")
    assert got == value
    got["tags"].append("mutated")
    assert cache.get("user:1") == value, "callers can mutate what they got"
    assert other_process_view(cache, cfg).get("user:1") == value
    assert cache.get("missing") is None
    assert cache.get("missing", "dflt") == "dflt"
    cache.set("none", None)
    assert cache.get("none", "dflt") is None, "a stored None is a hit"


def test_whole_api(cache: Cache) -> None:
    assert cache.add("a", 1) is True
    assert cache.add("a", 2) is False
    assert cache.get("a") == 1
    assert cache.set_many({"b": "B", "c": [3], "d": 4}) == []
    assert cache.get_many(["a", "b", "c", "d", "zz"]) == {"a": 1, "b": "B", "c": [3], "d": 4}
    assert cache.incr("d") == 5
    assert cache.decr("d", 10) == -5
    assert cache.has_key("b") and "b" in cache and "zz" not in cache
    assert cache.touch("b", 60) is True
    assert cache.touch("zz", 60) is False
    assert cache.delete("b") is True
    assert cache.delete("b") is False
    assert cache.delete_many(["c", "d", "zz"]) == 2
    cache.clear()
    assert cache.get("a") is None
    stats = cache.stats()
    assert stats["writes"] >= 4 and stats["l1_hits"] + stats["l2_hits"] >= 1
    assert "stratacache_writes_total" in cache.metrics_text()
    assert stats["breaker_open"] == 0
    assert "# TYPE stratacache_breaker_open gauge" in cache.metrics_text()


async def test_whole_api_async(cache: Cache) -> None:
    assert await cache.aadd("a", 1) is True
    assert await cache.aadd("a", 2) is False
    assert await cache.aget("a") == 1
    assert await cache.aset_many({"b": "B", "c": [3]}) == []
    assert await cache.aget_many(["a", "b", "c", "zz"]) == {"a": 1, "b": "B", "c": [3]}
    assert await cache.aincr("a", 4) == 5
    assert await cache.adecr("a") == 4
    assert await cache.ahas_key("b") is True
    assert await cache.atouch("b", 60) is True
    assert await cache.adelete("b") is True
    assert await cache.adelete_many(["c", "zz"]) == 1
    await cache.aset("e", {"x": 1}, 60)
    await cache.aclear()
    assert await cache.aget("e") is None


def test_ttls(cache: Cache, cfg: dict[str, object]) -> None:
    cache.set("short", "v", 0.2)
    cache.set("forever", "v", None)
    cache.set("zero", "v", 0)
    assert cache.get("zero") is None, "ttl 0 means do not cache"
    assert cache.get("short") == "v"
    time.sleep(0.3)  # past the deadline: the assertions below cannot flake
    assert cache.get("short") is None
    assert other_process_view(cache, cfg).get("short") is None
    assert cache.get("forever") == "v"


def test_counters_are_atomic_across_handles(cache: Cache, cfg: dict[str, object]) -> None:
    other = other_process_view(cache, cfg)
    cache.set("n", 0)
    barrier = threading.Barrier(8)

    def work(c: Cache) -> None:
        barrier.wait()
        for _ in range(100):
            c.incr("n")

    threads = [threading.Thread(target=work, args=(cache if i % 2 else other,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get("n") == 800
    with pytest.raises(stratacache.KeyNotFoundError) as e:
        cache.incr("nope")
    assert e.value.code == "E_NOT_FOUND"
    cache.set("s", "text")
    with pytest.raises(stratacache.NotAnIntegerError):
        cache.incr("s")


def test_stampede_threads_one_loader(cache: Cache) -> None:
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(200)
    results: list[object] = []

    def loader() -> dict[str, int]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)
        return {"v": 1}

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_set("cold", loader, 60))

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert results == [{"v": 1}] * 200
    assert cache.stats()["leads"] == 1


def test_loader_exception_reaches_every_waiter_unchanged(cache: Cache) -> None:
    class DatabaseDown(Exception):
        pass

    barrier = threading.Barrier(50)
    errors: list[BaseException] = []
    calls = 0

    def loader() -> None:
        nonlocal calls
        calls += 1
        time.sleep(0.05)
        raise DatabaseDown("db is down")

    def worker() -> None:
        barrier.wait()
        try:
            cache.get_or_set("bad", loader)
        except DatabaseDown as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1 and len(errors) == 50
    assert len({id(e) for e in errors}) == 1, "the very same exception object"
    assert cache.get_or_set("bad", lambda: "recovered") == "recovered"


async def test_stampede_asyncio_one_loader(cache: Cache) -> None:
    calls = 0
    started = asyncio.Event()

    async def loader() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        return "loaded"

    results = await asyncio.gather(*[cache.aget_or_set("acold", loader, 60) for _ in range(500)])
    assert calls == 1 and started.is_set()
    assert set(results) == {"loaded"}
    # A sync loader works from async code too.
    assert await cache.aget_or_set("sync-loader", lambda: 7) == 7


async def test_async_loader_exception(cache: Cache) -> None:
    async def loader() -> None:
        await asyncio.sleep(0.01)
        raise LookupError("nope")

    outcomes = await asyncio.gather(*[cache.aget_or_set("x", loader) for _ in range(20)], return_exceptions=True)
    assert all(isinstance(o, LookupError) for o in outcomes)


def test_stale_while_revalidate(cache: Cache) -> None:
    refreshed = threading.Event()

    def refresh() -> str:
        refreshed.set()
        return "new"

    cache.set("k", "old", 0.05, grace=60)
    time.sleep(0.08)  # past the fresh deadline
    assert cache.get("k") is None, "plain get serves fresh values only"
    assert cache.get_or_set("k", refresh, 60, allow_stale=True) == "old"
    assert refreshed.wait(5)
    deadline = time.monotonic() + 5
    while cache.get("k") != "new" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("k") == "new"


def test_serializers_share_entries_and_refuse_untrusted_formats(cfg: dict[str, object], ns: str) -> None:
    js = Cache(namespace=ns, serializer="json", **cfg)  # type: ignore[arg-type]
    pk = Cache(namespace=ns, serializer="pickle", **cfg)  # type: ignore[arg-type]
    js.set("j", {"a": [1, 2]})
    assert pk.get("j") == {"a": [1, 2]}, "pickle readers accept JSON entries"
    pk.set("p", {"a"})
    assert js.get("p", "miss") == "miss", "a JSON cache never unpickles"
    with pytest.raises(stratacache.SerializationError):
        js.set("bad", {1, 2})
    raw = Cache(namespace=ns, serializer="raw", **cfg)  # type: ignore[arg-type]
    raw.set("r", b"\x00\x01")
    assert raw.get("r") == b"\x00\x01"
    mp = Cache(namespace=ns, serializer="msgpack", **cfg)  # type: ignore[arg-type]
    mp.set("m", {"k": [1, "two"]})
    assert mp.get("m") == {"k": [1, "two"]}


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_signing_rejects_foreign_entries(where: str, ns: str) -> None:
    # Signatures protect what crosses Redis, so only the tiered configurations.
    cfg: dict[str, object] = {"op_timeout": 5.0, **CONFIGS[where]}
    writer = Cache(namespace=ns, l1=False, signing_key=b"attacker", **cfg)  # type: ignore[arg-type]
    reader = Cache(namespace=ns, l1=False, signing_key=b"ours", **cfg)  # type: ignore[arg-type]
    writer.set("k", {"pickled": True})
    assert reader.get("k") is None
    assert reader.stats()["decode_errors"] == 1


def test_bad_input_is_a_typed_error(cache: Cache) -> None:
    with pytest.raises(stratacache.InvalidKeyError):
        cache.get("")
    with pytest.raises(TypeError):
        cache.get(42)  # type: ignore[arg-type]
    with pytest.raises(stratacache.SerializationError):
        cache.set("k", threading.Lock())
    small = Cache(namespace=unique("small"), max_value_bytes=100)
    with pytest.raises(stratacache.ValueTooLargeError) as e:
        small.set("k", b"x" * 1000)
    assert e.value.code == "E_VALUE_TOO_LARGE"
    with pytest.raises(stratacache.ConfigError):
        Cache(namespace="bad:ns")
    closed = Cache(namespace=unique("closed"))
    closed.close()
    with pytest.raises(stratacache.CacheClosedError):
        closed.get("k")


def test_unreachable_redis_is_bounded_and_typed() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = Cache(redis_url=f"redis://127.0.0.1:{port}", namespace=unique("down"), connect_timeout=0.2, op_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(stratacache.RedisError) as e:
        c.get("k")
    assert e.value.code in ("E_L2_UNAVAILABLE", "E_L2_TIMEOUT")
    assert c.get_or_set("k", lambda: "from db") == "from db", "read-through still loads"
    assert time.monotonic() - t0 < 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_works_in_a_forked_child(ns: str) -> None:
    c = Cache(namespace=ns, redis_url=REDIS_URL)
    c.set("parent", "p")
    assert c.get("parent") == "p"
    pid = os.fork()
    if pid == 0:  # child: exit code tells the parent what happened
        code = 1
        try:
            signal_alarm = __import__("signal")
            signal_alarm.alarm(20)
            ok = c.get("parent") == "p"
            c.set("child", "c")
            ok = ok and c.get_or_set("loaded-in-child", lambda: 42) == 42
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    other = Cache(namespace=ns, redis_url=REDIS_URL, l1=False)
    assert other.get("child") == "c"
    assert other.get("loaded-in-child") == 42


def test_many_threads_share_one_l1(ns: str) -> None:
    a = Cache(namespace=ns)
    b = Cache(namespace=ns)
    a.set("k", "v")
    assert b.get("k") == "v"


def test_early_refresh_serves_fresh_value_and_reloads_once(cache: Cache) -> None:
    reloaded = threading.Event()
    gate = threading.Event()
    calls = 0

    def reload() -> str:
        nonlocal calls
        calls += 1
        gate.wait(5)  # held until every caller below was answered
        reloaded.set()
        return "v2"

    cache.set("hot", "v1", 60)
    # refresh_ahead=1.0: every fresh hit is due; one caller triggers the
    # background reload, everyone is served the current value at once.
    results = [cache.get_or_set("hot", reload, 60, refresh_ahead=1.0) for _ in range(20)]
    assert results == ["v1"] * 20
    gate.set()
    assert reloaded.wait(5)
    deadline = time.monotonic() + 5
    while cache.get("hot") != "v2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("hot") == "v2"
    assert calls == 1, "one background reload for 20 callers"
    assert cache.stats()["early_refreshes"] == 1
    assert cache.get_or_set("hot", reload, 60, early_refresh=0.0) == "v2"


def test_ttl_jitter_option(ns: str) -> None:
    with pytest.raises(stratacache.ConfigError):
        Cache(namespace=ns, ttl_jitter=2.0)
    c = Cache(namespace=ns, ttl_jitter=0.3)
    c.set("k", "v", 60)
    assert c.get("k") == "v"
