"""Dependencies tracked while a loader runs (the core's `deps`), from
Python: reads inside `get_or_set` / `aget_or_set` / `warm` loaders, the
Django backend and FastAPI `@cached` handlers become dependencies of what
they build; invalidating or writing an input invalidates the output, here
and in another process; a load whose input changed meanwhile is not
stored."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from conftest import CLUSTER, REDIS_URL, unique
from stratacache import Cache

CONFIGS: dict[str, dict[str, Any]] = {
    "l1": {},
    "redis": {"redis_url": REDIS_URL},
    "cluster": {"cluster": CLUSTER.split(",")},
}


@pytest.fixture(params=list(CONFIGS))
def cache(request: pytest.FixtureRequest) -> Cache:
    return Cache(namespace=unique("deps"), op_timeout=5.0, **CONFIGS[request.param])


def page_loader(cache: Cache, calls: Counter[str]) -> Callable[[], dict[str, Any]]:
    def load() -> dict[str, Any]:
        calls["page"] += 1
        return {"product": cache.get("product"), "missing": cache.get("absent")}

    return load


def test_has_key_inside_a_loader_is_a_dependency(cache: Cache) -> None:
    calls: Counter[str] = Counter()

    def load() -> bool:
        calls["page"] += 1
        return "flag" in cache

    assert cache.get_or_set("page", load, 60) is False
    cache.set("flag", 1, 60)
    assert cache.get_or_set("page", load, 60) is True
    assert calls["page"] == 2


CHANGES: dict[str, Callable[[Cache], object]] = {
    "tag": lambda c: c.invalidate_tags(["product:1"]),
    "set": lambda c: c.set("product", {"name": "new"}, 60, tags=["product:1"]),
    "delete": lambda c: c.delete("product"),
    "add of a key read as missing": lambda c: c.add("absent", 1, 60),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_an_input_change_invalidates_the_output(cache: Cache, change: str) -> None:
    calls: Counter[str] = Counter()
    cache.set("product", {"name": "old"}, 60, tags=["product:1"])
    load = page_loader(cache, calls)
    assert cache.get_or_set("page", load, 60) == {"product": {"name": "old"}, "missing": None}
    assert cache.get_or_set("page", load, 60) is not None
    assert calls["page"] == 1
    CHANGES[change](cache)
    page = cache.get_or_set("page", load, 60)
    assert calls["page"] == 2
    assert page == {
        # An invalidated tag makes the product itself stale (not served by get).
        "product": None if change in ("delete", "tag") else {"name": "new" if change == "set" else "old"},
        "missing": 1 if change.startswith("add") else None,
    }


def test_nesting_is_transitive_and_depends_on_names_tags(cache: Cache) -> None:
    calls: Counter[str] = Counter()
    cache.set("product", "p1", 60, tags=["product:1"])

    def section() -> str:
        calls["section"] += 1
        cache.depends_on("prices")
        return f"section({cache.get('product')})"

    def page() -> str:
        calls["page"] += 1
        return f"page({cache.get_or_set('section', section, 60)})"

    assert cache.get_or_set("page", page, 60) == "page(section(p1))"
    cache.invalidate_tags(["prices"])  # named by the inner loader only
    assert cache.get_or_set("page", page, 60) == "page(section(p1))"
    assert calls == Counter(page=2, section=2)
    cache.set("product", "p2", 60)  # read by the inner loader only
    assert cache.get_or_set("page", page, 60) == "page(section(p2))"
    assert calls == Counter(page=3, section=3)
    # A fresh section read by a new page load still carries its inputs.
    cache.delete("page")
    assert cache.get_or_set("page", page, 60) == "page(section(p2))"
    assert calls == Counter(page=4, section=3)
    cache.invalidate_tags(["prices"])
    assert cache.get_or_set("page", page, 60) == "page(section(p2))"
    assert calls == Counter(page=5, section=4)
    # Outside a loader, depends_on does nothing.
    cache.depends_on("prices")


def test_a_load_whose_input_changes_meanwhile_is_not_stored(cache: Cache) -> None:
    cache.set("product", "p1", 60)
    refused = cache.stats()["deps_refused"]

    def load() -> str:
        seen = cache.get("product")
        cache.set("product", "p2", 60)  # the input changes while loading
        return f"built from {seen}"

    assert cache.get_or_set("page", load, 60) == "built from p1"
    assert cache.stats()["deps_refused"] == refused + 1
    assert cache.get("page") is None
    assert cache.get_or_set("page", lambda: f"built from {cache.get('product')}", 60) == "built from p2"
    assert cache.get("page") == "built from p2"


def test_async_loaders_and_tasks_they_start(cache: Cache) -> None:
    calls: Counter[str] = Counter()

    async def main() -> None:
        await cache.aset("a", 1, 60, tags=["ta"])
        await cache.aset("b", 2, 60)

        async def load() -> int:
            calls["sum"] += 1
            # A task started by the loader reads into the same load.
            a, many = await asyncio.gather(cache.aget("a"), cache.aget_many(["b"]))
            await cache.adepends_on("tc")
            # "a" is stale (not served) once its tag is invalidated.
            return int(a or 0) + int(many["b"])

        assert await cache.aget_or_set("sum", load, 60) == 3
        assert await cache.aget_or_set("sum", load, 60) == 3
        for change in (
            cache.ainvalidate_tags(["ta"]),
            cache.aset("b", 5, 60),
            cache.ainvalidate_tags(["tc"]),
        ):
            await change
            await cache.aget_or_set("sum", load, 60)
        assert calls["sum"] == 4
        assert await cache.aget("sum") == 5

    asyncio.run(main())


def test_warm_records_what_load_many_read(cache: Cache) -> None:
    cache.set("source", "s1", 60)
    assert cache.warm(["x", "y"], load_many=lambda keys: {k: f"{k}:{cache.get('source')}" for k in keys}) == 2
    assert cache.get("x") == "x:s1"
    cache.set("source", "s2", 60)
    assert cache.get("x") is None and cache.get("y") is None


_WRITER = """
import sys
from stratacache import Cache
c = Cache(redis_url=sys.argv[1], namespace=sys.argv[2], op_timeout=5.0)
c.set("product", "from-the-other-process", 60)
"""


def test_a_write_in_another_process_invalidates_here() -> None:
    ns = unique("deps-fleet")
    cache = Cache(redis_url=REDIS_URL, namespace=ns, op_timeout=5.0)
    cache.set("product", "p1", 60)
    calls: Counter[str] = Counter()

    def load() -> str:
        calls["page"] += 1
        return f"page({cache.get('product')})"

    assert cache.get_or_set("page", load, 60) == "page(p1)"
    subprocess.run([sys.executable, "-c", _WRITER, REDIS_URL, ns], check=True, env=dict(os.environ))
    # The writer's script deleted the dependency record before it
    # returned; this process learns it from the bus, or from Redis once
    # its known version is dropped. Bounded wait on the bus.
    done = threading.Event()
    for _ in range(2000):
        if cache.get("page") is None:
            done.set()
            break
        threading.Event().wait(0.005)
    assert done.is_set(), "the page built from the changed product is still served"
    assert cache.get_or_set("page", load, 60) == "page(from-the-other-process)"
    assert calls["page"] == 2


def test_django_backend_and_fastapi_handlers() -> None:
    from django.core.cache import caches
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from stratacache.fastapi import cached, setup

    dj = caches["tiered"]
    calls: Counter[str] = Counter()
    key = unique("dj-product")
    dj.set(key, "p1", 60)

    def load() -> str:
        calls["dj"] += 1
        return f"page({dj.get(key)})"

    page = unique("dj-page")
    assert dj.get_or_set(page, load, 60) == "page(p1)"
    assert dj.get_or_set(page, load, 60) == "page(p1)"
    dj.delete(key)
    assert dj.get_or_set(page, load, 60) == "page(None)"
    assert calls["dj"] == 2

    cache = Cache(redis_url=REDIS_URL, namespace=unique("deps-http"), op_timeout=5.0)
    cache.set("product", "p1", 60, tags=["product:1"])
    app = FastAPI()
    setup(app, cache)

    @app.get("/product")
    @cached(ttl=60)
    def product() -> dict[str, Any]:
        calls["http"] += 1
        return {"product": cache.get("product")}

    client = TestClient(app)
    assert client.get("/product").json() == {"product": "p1"}
    assert client.get("/product").headers["x-cache"] == "HIT"
    cache.invalidate_tags(["product:1"])
    r = client.get("/product")
    # The product itself is stale now: the handler ran again and read nothing.
    assert r.headers["x-cache"] != "HIT" and r.json() == {"product": None}
    cache.set("product", "p2", 60)
    assert client.get("/product").json() == {"product": "p2"}
    assert calls["http"] == 3

    # The tags of what the handler read go to the edge with the response.
    @app.get("/tagged")
    @cached(ttl=60, edge_tag_header="Surrogate-Key", tags=["page"])
    def tagged() -> dict[str, Any]:
        return {"product": cache.get("tagged-product")}

    cache.set("tagged-product", "p", 60, tags=["product:9", "needs hashing!?"])
    miss, hit = client.get("/tagged"), client.get("/tagged")
    keys = miss.headers["surrogate-key"].split(" ")
    assert hit.headers["x-cache"] == "HIT" and hit.headers["surrogate-key"] == miss.headers["surrogate-key"]
    assert {"page", "product:9"} <= set(keys)
    assert any(k.startswith("http:url:") for k in keys)
    assert any(k.startswith("h-") and len(k) == 34 for k in keys)  # a tag the header cannot carry as it is


def test_tracking_off_leaves_only_explicit_tags() -> None:
    from django.core.cache import caches
    from django.test import override_settings

    cache = Cache(namespace=unique("deps-off"), track_dependencies=False)
    cache.set("product", "p1", 60)
    calls: Counter[str] = Counter()

    def load() -> str:
        calls["page"] += 1
        return f"page({cache.get('product')})"

    assert cache.get_or_set("page", load, 60, tags=["pages"]) == "page(p1)"
    cache.set("product", "p2", 60)
    assert cache.get_or_set("page", load, 60, tags=["pages"]) == "page(p1)"  # not a dependency
    cache.invalidate_tags(["pages"])
    assert cache.get_or_set("page", load, 60, tags=["pages"]) == "page(p2)"
    assert calls["page"] == 2

    alias = {"BACKEND": "stratacache.django.StrataCache", "OPTIONS": {"TRACK_DEPENDENCIES": False}}
    with override_settings(CACHES={"default": {"BACKEND": "stratacache.django.StrataCache"}, "off": alias}):
        assert caches["off"]._c._n.tracks_dependencies is False
