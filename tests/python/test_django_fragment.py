"""``{% load stratacache %}``'s ``{% cache %}``: Django's fragment tag
through the read-through, on every backend alias (L1 only, Redis,
Cluster): one render per key while others wait, tags, dependencies
tracked while it renders, and the core's injective fragment keys."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache import caches
from django.template import Context, Template, TemplateSyntaxError

from conftest import CACHE_ALIASES, unique
from stratacache import _native


class Counter:
    """A context value whose every rendering is counted."""

    def __init__(self, gate: Any = None) -> None:
        self.n = 0
        self.gate = gate
        self.lock = threading.Lock()

    def __str__(self) -> str:
        with self.lock:
            self.n += 1
            n = self.n
        if self.gate is not None:
            self.gate()
        return f"render-{n}"


def fragment(alias: str, extra: str = "") -> Template:
    return Template(
        "{% load stratacache %}{% cache 60 side v " + extra + ' using="' + alias + '" %}[{{ c }}]{% endcache %}'
    )


@pytest.mark.parametrize("alias", CACHE_ALIASES)
def test_rendered_once_then_served_and_invalidated_by_tag(alias: str) -> None:
    tag = unique("catalog")
    t = fragment(alias, f'tags="{tag} other"')
    c = Counter()
    v = unique("v")
    assert t.render(Context({"c": c, "v": v})) == "[render-1]"
    assert t.render(Context({"c": c, "v": v})) == "[render-1]"
    assert t.render(Context({"c": c, "v": v + "x"})) == "[render-2]"
    caches[alias].invalidate_tags([tag])  # type: ignore[attr-defined]
    assert t.render(Context({"c": c, "v": v})) == "[render-3]"
    assert c.n == 3


@pytest.mark.parametrize("alias", CACHE_ALIASES)
def test_one_render_while_the_others_wait(alias: str) -> None:
    backend = caches[alias]
    v = unique("v")
    waiting_before = backend.stats()["load_waits"]  # type: ignore[attr-defined]
    released = threading.Event()

    def gate() -> None:
        # The render goes on once the seven others wait for it (counted by
        # the core), or fails the test after 10 s.
        for _ in range(1000):
            if backend.stats()["load_waits"] - waiting_before >= 7:  # type: ignore[attr-defined]
                released.set()
                return
            released.wait(0.01)
        raise AssertionError("the other renders never waited")

    c = Counter(gate)
    t = fragment(alias)
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda _: t.render(Context({"c": c, "v": v})), range(8)))
    assert out == ["[render-1]"] * 8
    assert c.n == 1 and released.is_set()


@pytest.mark.parametrize("alias", CACHE_ALIASES)
def test_what_the_fragment_reads_is_a_dependency(alias: str) -> None:
    backend = caches[alias]
    price = unique("price")
    backend.set(price, 10)

    class Price:
        def __str__(self) -> str:
            return str(backend.get(price))

    t = Template('{% load stratacache %}{% cache 60 box p using="' + alias + '" %}{{ price }}/{{ c }}{% endcache %}')
    c = Counter()
    ctx = {"price": Price(), "c": c, "p": price}
    assert t.render(Context(ctx)) == "10/render-1"
    assert t.render(Context(ctx)) == "10/render-1"
    backend.set(price, 12)
    assert t.render(Context(ctx)) == "12/render-2"


def test_keys_are_injective_and_arguments_checked() -> None:
    assert _native.fragment_key("a", ["b:c"]) != _native.fragment_key("a", ["b", "c"])
    assert _native.fragment_key("a:b", ["c"]) != _native.fragment_key("a", ["b:c"])
    t = Template("{% load stratacache %}{% cache 60 pair x y %}{{ c }}{% endcache %}")
    c = Counter()
    assert t.render(Context({"c": c, "x": "a:b", "y": "c"})) == "render-1"
    assert t.render(Context({"c": c, "x": "a", "y": "b:c"})) == "render-2"
    with pytest.raises(TemplateSyntaxError):
        Template("{% load stratacache %}{% cache 60 %}x{% endcache %}")
    with pytest.raises(TemplateSyntaxError, match="non-integer timeout"):
        Template('{% load stratacache %}{% cache "soon" f %}x{% endcache %}').render(Context({}))
