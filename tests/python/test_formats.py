"""An entry the serializer cannot read (another serializer wrote it, e.g.
before a deploy switched pickle -> json) is a counted miss for every read,
read-throughs included: one loader run overwrites it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from conftest import REDIS_URL, unique
from stratacache import Cache


def _pair(**kw: Any) -> tuple[Cache, Cache]:
    ns = unique("formats")
    return (
        Cache(namespace=ns, redis_url=REDIS_URL, serializer="pickle", **kw),
        Cache(namespace=ns, redis_url=REDIS_URL, serializer="json", **kw),
    )


def test_get_or_set_loads_over_an_unreadable_entry() -> None:
    old, new = _pair()
    old.set("k", {1, 2, 3})  # a set: pickled, unreadable as JSON
    assert new.get("k", "default") == "default"
    # Refused twice: the copy in the (shared) L1, then the one in Redis.
    assert new.stats()["format_refusals"] == 2, "counted as refusals"
    assert new.get_many(["k"]) == {}
    assert new.stats()["format_refusals"] == 4
    calls = 0
    barrier = threading.Barrier(8)
    out: list[Any] = []

    def loader() -> list[int]:
        nonlocal calls
        calls += 1
        return [1, 2, 3]

    def worker() -> None:
        barrier.wait()
        out.append(new.get_or_set("k", loader, ttl=60))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [[1, 2, 3]] * 8
    assert calls == 1, "one loader run overwrote the entry"
    assert new.get("k") == [1, 2, 3]


async def test_aget_or_set_loads_over_an_unreadable_entry() -> None:
    old, new = _pair()
    await old.aset("k", {"a"})
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return "fresh"

    got = await asyncio.gather(*(new.aget_or_set("k", loader, ttl=60) for _ in range(8)))
    assert got == ["fresh"] * 8 and calls == 1
    assert await new.aget("k") == "fresh"


def test_django_serializer_switch_loads_over_old_entries() -> None:
    from stratacache.django import StrataCache

    ns = unique("dj-formats")
    before = StrataCache(REDIS_URL, {"OPTIONS": {"NAMESPACE": ns, "SERIALIZER": "pickle"}})
    after = StrataCache(REDIS_URL, {"OPTIONS": {"NAMESPACE": ns, "SERIALIZER": "json"}})
    before.set("k", {1, 2})
    assert after.get("k", "default") == "default"
    assert after.get_or_set("k", lambda: [1, 2], 60) == [1, 2]
    assert after.get("k") == [1, 2]
    before.set("a", {3})
    assert asyncio.run(after.aget_or_set("a", lambda: [3], 60)) == [3]
