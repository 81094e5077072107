"""``stratacache.jinja2.FragmentCache``: Jinja2's ``{% cache %}`` through
the read-through, sync and async environments, L1 only and Redis."""

from __future__ import annotations

import asyncio

import pytest
from jinja2 import Environment, TemplateSyntaxError

from conftest import REDIS_URL, unique
from stratacache import Cache
from stratacache.jinja2 import FragmentCache


def env(cache: Cache, *, is_async: bool = False) -> Environment:
    e = Environment(extensions=[FragmentCache], enable_async=is_async)
    e.stratacache = cache  # type: ignore[attr-defined]
    return e


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


@pytest.mark.parametrize("redis", [False, True])
def test_rendered_once_then_served_tagged_and_dependent(redis: bool) -> None:
    cache = Cache(namespace=unique("jinja"), redis_url=REDIS_URL if redis else None)
    t = env(cache).from_string('{% cache "side", v, ttl=60, tags=["catalog"] %}[{{ c() }}/{{ price() }}]{% endcache %}')
    c = Counter()
    cache.set("price", 10)
    ctx = {"c": c, "price": lambda: cache.get("price")}
    assert t.render(v=1, **ctx) == "[1/10]"
    assert t.render(v=1, **ctx) == "[1/10]"
    assert t.render(v=2, **ctx) == "[2/10]"
    cache.invalidate_tags(["catalog"])
    assert t.render(v=1, **ctx) == "[3/10]"
    cache.set("price", 12)  # read while rendering: a dependency
    assert t.render(v=1, **ctx) == "[4/12]"


def test_async_environment() -> None:
    cache = Cache(namespace=unique("jinja-async"))
    t = env(cache, is_async=True).from_string('{% cache "a", ttl=60 %}[{{ c() }}]{% endcache %}')
    c = Counter()

    async def go() -> list[str]:
        return [await t.render_async(c=c) for _ in range(3)]

    assert asyncio.run(go()) == ["[1]", "[1]", "[1]"]


def test_keys_are_injective_and_options_checked() -> None:
    cache = Cache(namespace=unique("jinja-keys"))
    t = env(cache).from_string('{% cache "p", x, y %}{{ c() }}{% endcache %}')
    c = Counter()
    assert t.render(c=c, x="a:b", y="c") == "1"
    assert t.render(c=c, x="a", y="b:c") == "2"
    with pytest.raises(TemplateSyntaxError, match="unknown option"):
        env(cache).from_string('{% cache "p", tll=5 %}x{% endcache %}')
    with pytest.raises(RuntimeError, match=r"env\.stratacache"):
        Environment(extensions=[FragmentCache]).from_string('{% cache "p" %}x{% endcache %}').render()
