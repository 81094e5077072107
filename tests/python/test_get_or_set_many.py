"""``get_or_set_many``: the fresh values from the cache, one
``load_many`` call for the rest through the fleet leases, and a key
another process is loading waited for, not loaded twice (L1 only and
Redis, two handles standing in for two processes)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from conftest import REDIS_URL, unique
from stratacache import Cache


@pytest.mark.parametrize("redis", [False, True])
def test_one_call_for_the_missing_keys(redis: bool) -> None:
    cache = Cache(namespace=unique("many"), redis_url=REDIS_URL if redis else None)
    cache.set("u:1", {"id": 1})
    calls: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, Any]:
        calls.append(keys)
        return {k: {"id": int(k[2:])} for k in keys if k != "u:404"}

    got = cache.get_or_set_many(["u:1", "u:2", "u:3", "u:2", "u:404"], load_many, 60, tags=["users"])
    assert got == {"u:1": {"id": 1}, "u:2": {"id": 2}, "u:3": {"id": 3}}
    assert calls == [["u:2", "u:3", "u:404"]]
    # Now cached (the left-out key is not), and tagged.
    assert cache.get_or_set_many(["u:2", "u:3"], load_many, 60) == {"u:2": {"id": 2}, "u:3": {"id": 3}}
    assert len(calls) == 1
    cache.invalidate_tags(["users"])
    cache.get_or_set_many(["u:2"], load_many, 60)
    assert calls[-1] == ["u:2"]


def test_a_key_another_process_is_loading_is_waited_for() -> None:
    ns = unique("many-fleet")
    a = Cache(namespace=ns, redis_url=REDIS_URL, l1_max_bytes=1 << 20)
    b = Cache(namespace=ns, redis_url=REDIS_URL, l1_max_bytes=2 << 20)  # another state: another process
    leading = threading.Event()
    release = threading.Event()

    def slow() -> str:
        leading.set()
        assert release.wait(10)
        return "from a"

    t = threading.Thread(target=lambda: a.get_or_set("k", slow, 60))
    t.start()
    assert leading.wait(10)
    calls: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, str]:
        calls.append(keys)
        if "k" in keys:
            raise AssertionError("k was being loaded by a")
        release.set()  # a finishes while b waits for it
        return {k: f"from b {k}" for k in keys}

    got = b.get_or_set_many(["j", "k"], load_many, 60)
    t.join(10)
    assert got == {"j": "from b j", "k": "from a"}
    assert calls == [["j"]]


@pytest.mark.parametrize("redis", [False, True])
def test_asyncio_twin(redis: bool) -> None:
    import asyncio

    cache = Cache(namespace=unique("amany"), redis_url=REDIS_URL if redis else None)
    calls: list[list[str]] = []

    async def load_many(keys: list[str]) -> dict[str, int]:
        calls.append(keys)
        return {k: len(k) for k in keys if k != "gone"}

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        await cache.aset("a", 0)
        first = await cache.aget_or_set_many(["a", "bb", "gone"], load_many, 60, tags=["t"])
        second = await cache.aget_or_set_many(["a", "bb"], load_many, 60)
        return first, second

    first, second = asyncio.run(go())
    assert first == {"a": 0, "bb": 2} and second == {"a": 0, "bb": 2}
    assert calls == [["bb", "gone"]]
