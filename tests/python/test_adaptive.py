"""Adaptive caching: a loader returns ``Loaded(value, ttl=, grace=, tags=)``
to choose the entry's lifetime and tags from what it loaded. Real Redis;
the entry's lifetime is read back from Redis (PTTL)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest

from conftest import REDIS_URL
from stratacache import Cache, InvalidValueError, Loaded, NoCache, Policy


@pytest.fixture
def cache(ns: str) -> Iterator[Cache]:
    c = Cache(redis_url=REDIS_URL, namespace=ns, ttl=600)
    yield c
    c.close()


def pttl_ms(cache: Cache, key: str) -> int:
    out = subprocess.run(
        ["redis-cli", "-u", REDIS_URL, "PTTL", f"sc:{cache.namespace}:{{{key}}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_loaded_ttl_and_grace_replace_the_callers(cache: Cache) -> None:
    assert cache.get_or_set("short", lambda: Loaded({"n": 1}, ttl=30), ttl=600) == {"n": 1}
    assert 25_000 < pttl_ms(cache, "short") <= 30_000
    # grace extends how long Redis keeps it (stale window).
    policy = Policy(allow_stale=True, grace=5)
    assert cache.get_or_set("graced", lambda: Loaded(1, ttl=30, grace=100), ttl=600, policy=policy) == 1
    assert 125_000 < pttl_ms(cache, "graced") <= 130_000
    # Without Loaded the caller's TTL holds.
    cache.get_or_set("plain", lambda: 1, ttl=600)
    assert 595_000 < pttl_ms(cache, "plain") <= 600_000


def test_loaded_tags_are_added_to_the_callers(cache: Cache) -> None:
    calls = []

    def load() -> Loaded[str]:
        calls.append(1)
        return Loaded(f"v{len(calls)}", tags=["product:7"])

    policy = Policy(tags=("catalog",))
    assert cache.get_or_set("p7", load, policy=policy) == "v1"
    assert cache.get_or_set("p7", load, policy=policy) == "v1"
    cache.invalidate_tags(["product:7"])  # the loader's tag
    assert cache.get_or_set("p7", load, policy=policy) == "v2"
    cache.invalidate_tags(["catalog"])  # the caller's tag still applies
    assert cache.get_or_set("p7", load, policy=policy) == "v3"
    assert len(calls) == 3


def test_loaded_ttl_zero_hands_the_value_out_without_storing_it(cache: Cache) -> None:
    calls = []

    def load() -> Loaded[dict[str, str]]:
        calls.append(1)
        return Loaded({"status": "pending"}, ttl=0)

    assert cache.get_or_set("order", load) == {"status": "pending"}
    assert cache.get("order") is None
    assert cache.get_or_set("order", load) == {"status": "pending"}
    assert len(calls) == 2
    assert cache.stats()["not_cached"] == 2


def test_bad_loaded_options_are_typed_errors(cache: Cache) -> None:
    with pytest.raises(InvalidValueError, match="tag names"):
        cache.get_or_set("bad", lambda: Loaded(1, tags=[""]))
    with pytest.raises(TypeError, match="not one string"):
        Loaded(1, tags="product:7")
    with pytest.raises(ValueError, match="grace"):
        cache.get_or_set("bad2", lambda: Loaded(1, grace=-1))
    assert cache.get("bad") is None


def test_get_or_set_many_values_choose_their_own_options(cache: Cache) -> None:
    loads: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, object]:
        loads.append(keys)
        return {
            "a": Loaded("A", tags=["t:a"]),
            "b": Loaded("B", ttl=0),
            "c": NoCache("C"),
            "d": "D",
        }

    keys = ["a", "b", "c", "d"]
    assert cache.get_or_set_many(keys, load_many, ttl=600) == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert [cache.get(k) for k in keys] == ["A", None, None, "D"]
    cache.invalidate_tags(["t:a"])
    assert cache.get("a") is None
    assert cache.get("d") == "D"
    assert cache.warm(["x", "y"], load_many=lambda ks: {"x": Loaded(1, ttl=30), "y": NoCache(2)}) == 1
    assert 25_000 < pttl_ms(cache, "x") <= 30_000
    assert cache.get("y") is None


def test_async_loaders(cache: Cache) -> None:
    async def main() -> None:
        async def load() -> Loaded[int]:
            return Loaded(5, ttl=30, tags=["t:async"])

        assert await cache.aget_or_set("async", load, ttl=600) == 5
        assert 25_000 < pttl_ms(cache, "async") <= 30_000
        await cache.ainvalidate_tags(["t:async"])
        assert await cache.aget("async") is None

        async def load_many(keys: list[str]) -> dict[str, object]:
            return {k: Loaded(k.upper(), ttl=0) for k in keys}

        assert await cache.aget_or_set_many(["m", "n"], load_many) == {"m": "M", "n": "N"}
        assert await cache.aget("m") is None

    asyncio.run(main())


def test_fail_open_answers_the_loaders_value_not_the_wrapper(ns: str) -> None:
    from stratacache.testing import redis_down

    c = Cache(redis_url=REDIS_URL, namespace=ns, fail_open=True)
    with redis_down(c):
        assert c.get_or_set("k", lambda: Loaded(5, ttl=1)) == 5
        assert c.get_or_set("n", lambda: NoCache(6)) == 6

        async def main() -> None:
            async def load() -> Loaded[int]:
                return Loaded(7, tags=["t"])

            assert await c.aget_or_set("a", load) == 7

        asyncio.run(main())
    c.close()


def test_a_bad_loaded_value_in_a_batch_releases_every_lease(cache: Cache) -> None:
    def load_many(keys: list[str]) -> dict[str, object]:
        return {"a": "A", "b": Loaded("B", tags=[""]), "c": Loaded("C", ttl=30)}

    with pytest.raises(InvalidValueError):
        cache.get_or_set_many(["a", "b", "c"], load_many)
    # Every lease was released: the next call loads at once (a held fleet
    # lease would make it wait for another process first).
    seen = cache.stats()["lease_waits"]
    assert cache.get_or_set_many(["a", "b", "c"], lambda ks: {k: k.upper() for k in ks}) == {
        "a": "A",
        "b": "B",
        "c": "C",
    }
    assert cache.stats()["lease_waits"] == seen
