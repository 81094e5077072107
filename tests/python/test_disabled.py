"""Caching off for a block (``Cache.disabled()``, ``stratacache.disabled()``,
a Django alias's ``disabled()``): the shared table
(tests/vectors/disabled.json, also run by tests/node/disabled.test.js)
through the plain API (sync and asyncio) and Django's, then what the scope
covers: tasks and loader threads started in it, nesting, other caches,
every handle on the same data."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches

import stratacache
from conftest import REDIS_URL, unique
from stratacache import Cache

TABLE = json.loads((Path(__file__).parents[1] / "vectors" / "disabled.json").read_text())["cases"]
ABSENT = object()


class Loads:
    """A loader that answers the case's value and counts its calls."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def one(self, *_key: str) -> Any:
        self.calls += 1
        return self.value

    def many(self, keys: list[str]) -> dict[str, Any]:
        self.calls += 1
        return dict.fromkeys(keys, self.value)


def call_plain(c: Cache, case: dict[str, Any], loads: Loads) -> Any:
    op = case["call"]
    if op == "get":
        return c.get(case["key"])
    if op == "has":
        return c.has_key(case["key"])
    if op == "get_many":
        return c.get_many(case["keys"])
    if op == "set":
        return c.set(case["key"], case["value"])
    if op == "add":
        return c.add(case["key"], case["value"])
    if op == "touch":
        return c.touch(case["key"], 60)
    if op == "get_or_set":
        return c.get_or_set(case["key"], loads.one, 60)
    if op == "get_or_set_many":
        return c.get_or_set_many(case["keys"], loads.many, 60)
    if op == "warm":
        return c.warm(case["keys"], loads.one, 60)
    if op == "delete":
        return c.delete(case["key"])
    if op == "incr":
        return c.incr(case["key"])
    if op == "invalidate_tags":
        return c.invalidate_tags(case["tags"])
    assert op == "clear", op
    return c.clear()


async def call_async(c: Cache, case: dict[str, Any], loads: Loads) -> Any:
    op = case["call"]
    if op == "get":
        return await c.aget(case["key"])
    if op == "has":
        return await c.ahas_key(case["key"])
    if op == "get_many":
        return await c.aget_many(case["keys"])
    if op == "set":
        return await c.aset(case["key"], case["value"])
    if op == "add":
        return await c.aadd(case["key"], case["value"])
    if op == "touch":
        return await c.atouch(case["key"], 60)
    if op == "get_or_set":
        return await c.aget_or_set(case["key"], loads.one, 60)
    if op == "get_or_set_many":
        return await c.aget_or_set_many(case["keys"], loads.many, 60)
    if op == "warm":
        return await c.awarm(case["keys"], loads.one, 60)
    if op == "delete":
        return await c.adelete(case["key"])
    if op == "incr":
        return await c.aincr(case["key"])
    if op == "invalidate_tags":
        return await c.ainvalidate_tags(case["tags"])
    assert op == "clear", op
    return await c.aclear()


def call_django(c: Any, case: dict[str, Any], loads: Loads) -> Any:
    op = case["call"]
    if op == "has":
        return c.has_key(case["key"])
    if op == "get_or_set":
        return c.get_or_set(case["key"], loads.one, 60)
    if op == "warm":
        return c.warm(case["keys"], loads.many, 60)
    if op in ("get", "delete", "incr"):
        return getattr(c, op)(case["key"])
    if op in ("set", "add"):
        return getattr(c, op)(case["key"], case["value"], 60)
    if op == "touch":
        return c.touch(case["key"], 60)
    if op == "get_many":
        return c.get_many(case["keys"])
    if op == "invalidate_tags":
        return c.invalidate_tags(case["tags"])
    assert op == "clear", op
    return c.clear()


def check(case: dict[str, Any], got: Any, loads: Loads, read: Callable[[str], Any], who: str) -> None:
    where = f"{who}: {case['call']} {case.get('key', case.get('keys', ''))}"
    if "returns" in case:
        assert got == case["returns"], f"{where}: answered {got!r}"
    # Django's warm takes load_many (one call) where the others load per key.
    want_loads = 1 if who == "django" and case["call"] == "warm" else case.get("loads", 0)
    assert loads.calls == want_loads, f"{where}: {loads.calls} loader calls"
    for key, value in case["after"].items():
        assert read(key) == value, f"{where}: {key} reads {read(key)!r} afterwards"


def fill(set_: Callable[..., Any]) -> None:
    set_("k", "old", tags=["t"])
    set_("tagged", "x", tags=["t"])


@pytest.mark.parametrize("redis", [False, True], ids=["l1", "redis"])
@pytest.mark.parametrize("case", TABLE, ids=lambda c: f"{c['call']}-{c.get('key', '')}")
def test_plain(case: dict[str, Any], redis: bool) -> None:
    c = Cache(namespace=unique("off"), redis_url=REDIS_URL if redis else None)
    fill(lambda k, v, tags: c.set(k, v, 60, tags=tags))
    c.set("n", 1, 60)
    loads = Loads(case.get("value"))
    with c.disabled():
        got = call_plain(c, case, loads)
    check(case, got, loads, c.get, "sync")


@pytest.mark.parametrize("case", TABLE, ids=lambda c: f"{c['call']}-{c.get('key', '')}")
def test_asyncio(case: dict[str, Any]) -> None:
    c = Cache(namespace=unique("off-async"), redis_url=REDIS_URL)
    fill(lambda k, v, tags: c.set(k, v, 60, tags=tags))
    c.set("n", 1, 60)
    loads = Loads(case.get("value"))

    async def run() -> Any:
        with stratacache.disabled(c):
            return await call_async(c, case, loads)

    check(case, asyncio.run(run()), loads, c.get, "asyncio")


@pytest.fixture
def django_cache() -> Iterator[Any]:
    c = caches["tiered"]
    c.clear()
    yield c
    c.clear()


# Django's cache API has no get_or_set_many.
@pytest.mark.parametrize(
    "case", [c for c in TABLE if c["call"] != "get_or_set_many"], ids=lambda c: f"{c['call']}-{c.get('key', '')}"
)
def test_django(case: dict[str, Any], django_cache: Any) -> None:
    c = django_cache
    fill(lambda k, v, tags: c.set(k, v, 60, tags=tags))
    c.set("n", 1, 60)
    loads = Loads(case.get("value"))
    # Every alias off (the global switch); the backend's own is below.
    with stratacache.disabled():
        got = call_django(c, case, loads)
    check(case, got, loads, c.get, "django")


def test_what_the_scope_covers() -> None:
    ns = unique("off-scope")
    a = Cache(namespace=ns, redis_url=REDIS_URL)
    same = Cache(namespace=ns, redis_url=REDIS_URL, serializer="json")
    other = Cache(namespace=unique("off-other"), redis_url=REDIS_URL)
    for c in (a, other):
        c.set("k", "old", 60)
    with a.disabled():
        assert a.get("k") is None
        assert same.get("k") is None, "another handle on the same data is covered"
        assert other.get("k") == "old", "another cache is not"
        with other.disabled():
            assert other.get("k") is None
            assert a.get("k") is None, "nested: the outer cache stays off"
        assert other.get("k") == "old"
        with stratacache.disabled():
            assert other.get("k") is None
    assert a.get("k") == "old" and other.get("k") == "old", "back on after the block"
    with pytest.raises(TypeError, match="stratacache caches"):
        with stratacache.disabled(object()):
            pass


def test_tasks_and_loader_threads_inherit_it_other_threads_do_not() -> None:
    c = Cache(namespace=unique("off-inherit"), redis_url=REDIS_URL)
    c.set("k", "old", 60)
    seen: dict[str, Any] = {}

    def loader() -> str:
        # A loader with a deadline runs on the cache's thread pool.
        seen["in timed loader"] = c.get("k")
        return "loaded"

    with c.disabled():
        assert c.get_or_set("fresh", loader, 60, hard_timeout=5.0) == "loaded"
        t = threading.Thread(target=lambda: seen.__setitem__("own thread", c.get("k")))
        t.start()
        t.join()

        async def in_task() -> Any:
            return await asyncio.create_task(c.aget("k"))

        seen["task"] = asyncio.run(in_task())
    assert seen == {"in timed loader": None, "own thread": "old", "task": None}
    assert c.get("fresh") is None


def test_loaders_run_for_every_caller() -> None:
    c = Cache(namespace=unique("off-flight"), redis_url=REDIS_URL)
    inside = threading.Barrier(3)
    calls = 0
    lock = threading.Lock()

    def loader() -> str:
        nonlocal calls
        with lock:
            calls += 1
        inside.wait(timeout=10)  # all three are in their loaders at once
        return "v"

    got: list[Any] = []

    def caller() -> None:
        with c.disabled():
            got.append(c.get_or_set("hot", loader, 60))

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert got == ["v", "v", "v"]
    assert calls == 3
    assert c.get_or_set("hot", Loads("cached").one, 60) == "cached"
    assert c.get("hot") == "cached", "stored once caching is back on"


def test_django_alias_and_cache_page(django_cache: Any) -> None:
    from django.test import Client

    import django_app

    django_cache.set("k", "old", 60)
    block: AbstractContextManager[None] = django_cache.disabled()
    with block:
        assert django_cache.get("k") is None
        assert caches["tiered"].get("k") is None
    assert django_cache.get("k") == "old"
    client = Client()
    before = django_app.page_calls["page"]
    with stratacache.disabled():
        for _ in range(2):
            r = client.get("/sc/page/?off=1")
            assert r.status_code == 200
            assert r["Cache-Status"] == "stratacache; fwd=bypass; detail=disabled"
    assert django_app.page_calls["page"] == before + 2
    client.get("/sc/page/?off=1")
    client.get("/sc/page/?off=1")
    assert django_app.page_calls["page"] == before + 3, "cached again after the block"
