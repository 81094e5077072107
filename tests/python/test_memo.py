"""Decoded values kept beside L1 entries (the memo): an L1 hit hands out
the kept immutable value or a fresh structural copy instead of unpickling
again. What callers can observe must not change: every get returns an
equal value they may mutate freely, aliasing inside a value survives,
anything else is decoded as before, and nothing outlives its entry."""

from __future__ import annotations

import asyncio
import collections
import pickle
from typing import Any

import pytest
from django.core.cache import caches

from conftest import REDIS_URL, unique
from stratacache import Cache
from stratacache.exceptions import ConfigError


class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x


@pytest.fixture(params=["l1", "redis"])
def cache(request: pytest.FixtureRequest) -> Cache:
    kw: dict[str, Any] = {"redis_url": REDIS_URL, "op_timeout": 5.0} if request.param == "redis" else {}
    return Cache(namespace=unique("memo"), **kw)


def memo_bytes(c: Cache) -> int:
    return int(c.stats()["l1_memo_bytes"])


NESTED = {"id": 7, "tags": ["a", "b"], "owner": {"name": "Ada", "roles": {"admin", "dev"}}, "pair": (1, "x")}


def test_mutating_a_result_never_changes_the_cache(cache: Cache) -> None:
    cache.set("k", NESTED)
    for _ in range(3):  # the first get decodes and keeps; later ones copy
        got = cache.get("k")
        assert got == NESTED
        got["tags"].append("mutated")
        got["owner"]["name"] = "Eve"
        got["owner"]["roles"].add("root")
        got["new"] = 1
    assert memo_bytes(cache) > 0
    a, b = cache.get("k"), cache.get("k")
    assert a == b == NESTED
    assert a is not b and a["tags"] is not b["tags"] and a["owner"]["roles"] is not b["owner"]["roles"]


def test_immutable_values_are_kept_and_shared(cache: Cache) -> None:
    for i, v in enumerate(["text", b"bytes", 3.5, (1, ("a", None)), frozenset({1, 2}), 2**70, True]):
        cache.set(f"k{i}", v)
        first = cache.get(f"k{i}")
        assert first == v and type(first) is type(v)
        assert cache.get(f"k{i}") is cache.get(f"k{i}"), "an immutable value is decoded once"


def test_aliasing_inside_a_value_survives(cache: Cache) -> None:
    shared: list[int] = [1]
    cache.set("k", {"x": shared, "y": shared})
    for _ in range(2):
        got = cache.get("k")
        assert got["x"] is got["y"], "pickle keeps the aliasing, so must every hit"
        got["x"].append(2)
        assert got["y"] == [1, 2]
    assert cache.get("k") == {"x": [1], "y": [1]}


@pytest.mark.parametrize(
    "value",
    [
        Point(1),
        collections.OrderedDict(a=1),
        {"p": Point(2)},
        {"cls": Point, "fn": len},
        [[0] * 10 for _ in range(40)],  # more objects than are walked
        ([1], 2),  # a tuple holding a mutable list
    ],
    ids=["instance", "dict-subclass", "instance-inside", "class-inside", "big-tree", "tuple-of-list"],
)
def test_other_values_are_decoded_every_time(cache: Cache, value: Any) -> None:
    cache.set("k", value)
    a, b = cache.get("k"), cache.get("k")
    assert a == b == value and type(a) is type(value)
    assert a is not b
    assert memo_bytes(cache) <= 64, "nothing kept but a note that it is decoded per hit"


def test_large_values_are_not_kept(cache: Cache) -> None:
    cache.set("k", "x" * (65 << 10))
    assert cache.get("k") is not cache.get("k")
    assert memo_bytes(cache) == 0


def test_a_new_value_or_a_delete_replaces_what_was_kept(cache: Cache) -> None:
    cache.set("k", "old")
    assert cache.get("k") is cache.get("k")
    cache.set("k", "new")
    assert cache.get("k") == "new"
    cache.delete("k")
    assert cache.get("k") is None
    assert memo_bytes(cache) == 0, "kept values go with their entries"
    # A tag invalidation leaves the entry (stale) in L1: never served fresh.
    cache.set("k", ["v"], tags=["t"])
    assert cache.get("k") == ["v"]
    cache.invalidate_tags(["t"])
    assert cache.get("k") is None


def test_a_dropped_handle_frees_its_l1_at_once() -> None:
    # Nothing in a handle refers back to it: without a cycle, the L1 it
    # alone held goes as soon as the handle does, not at the next GC.
    ns = unique("memo")
    Cache(namespace=ns).set("k", "v")
    assert Cache(namespace=ns).get("k") is None


def test_the_budget_bounds_what_is_kept() -> None:
    off = Cache(namespace=unique("memo"), l1_memo_bytes=0)
    off.set("k", "text")
    assert off.get("k") == "text"
    assert off.get("k") is not off.get("k")
    assert memo_bytes(off) == 0

    small = Cache(namespace=unique("memo"), l1_memo_bytes=2_000)
    for i in range(40):
        small.set(f"k{i}", f"value {i} " + "x" * 100)
        assert small.get(f"k{i}") == f"value {i} " + "x" * 100
        assert 0 < memo_bytes(small) <= 2_000
    kept = sum(small.get(f"k{i}") is small.get(f"k{i}") for i in range(40))
    assert 0 < kept < 40

    with pytest.raises(ConfigError, match="l1_memo_bytes"):
        Cache(namespace=unique("memo"), l1_max_bytes=1000, l1_memo_bytes=1000)


def test_a_handle_with_another_serializer_never_gets_kept_values() -> None:
    ns = unique("memo")
    pickler = Cache(namespace=ns)
    jsoner = Cache(namespace=ns, serializer="json")  # same L1 (same settings)
    pickler.set("k", {"a": 1})
    assert pickler.get("k") == {"a": 1}
    assert memo_bytes(pickler) > 0
    assert jsoner.get("k", "unreadable") == "unreadable", "a JSON reader never sees a pickle"
    jsoner.set("j", {"b": [2]})
    assert jsoner.get("j") == {"b": [2]} == pickler.get("j")


def test_asyncio_twin_hands_out_copies_too(cache: Cache) -> None:
    async def main() -> None:
        await cache.aset("k", NESTED)
        got = await cache.aget("k")
        got["tags"].clear()
        again = await cache.aget("k")
        assert again == NESTED and again is not got
        assert await cache.aget("missing", "d") == "d"

    asyncio.run(main())


@pytest.mark.parametrize("alias", ["default", "tiered"])
def test_django_get_hands_out_copies(alias: str) -> None:
    c = caches[alias]
    key = unique("memo")
    c.set(key, NESTED)
    got = c.get(key)
    got["owner"]["roles"].discard("admin")
    assert c.get(key) == NESTED
    assert c.get(key) is not c.get(key)
    c.set(key, "s")
    assert c.get(key) is c.get(key)
    # A pickle of an instance is still decoded per call.
    c.set(key, Point(3))
    assert c.get(key) == Point(3) and c.get(key) is not c.get(key)
    assert pickle.loads(pickle.dumps(c.get(key))) == Point(3)


def test_django_key_attributes_assigned_later_are_honoured() -> None:
    # get() builds "prefix:version:key" from a prefix kept ready; assigning
    # any of the attributes it comes from must rebuild it.
    from stratacache.django import StrataCache

    c = StrataCache("", {"KEY_PREFIX": "a", "OPTIONS": {"NAMESPACE": unique("memo")}})
    c.set("k", "v1")
    c.key_prefix = "b"
    assert c.get("k") is None
    c.set("k", "v2")
    c.key_prefix = "a"
    assert c.get("k") == "v1"
    c.version = 2
    assert c.get("k") is None and c.get("k", version=1) == "v1"
    c.key_func = lambda key, prefix, version: f"custom-{key}"
    c.set("k", "v3")
    assert c.get("k") == "v3" and c.get("k", version=1) == "v3"
    assert c._n.get_value("custom-k", c._sloads, c._memo, None) == "v3"


def test_get_or_set_hits_hand_out_copies_and_kept_values(cache: Cache) -> None:
    calls = []

    def load() -> dict[str, Any]:
        calls.append(1)
        return {"rows": [1, 2], "meta": {"n": 2}}

    first = cache.get_or_set("k", load)
    first["rows"].append(3)  # the loader's own object: not what was cached
    for _ in range(3):
        got = cache.get_or_set("k", load)
        assert got == {"rows": [1, 2], "meta": {"n": 2}}
        got["meta"]["n"] = 99
    assert calls == [1]
    assert cache.get_or_set("s", lambda: "text") == "text"
    assert cache.get_or_set("s", lambda: "other") is cache.get_or_set("s", lambda: "other")

    async def main() -> None:
        got = await cache.aget_or_set("k", load)
        got["rows"].clear()
        assert await cache.aget_or_set("k", load) == {"rows": [1, 2], "meta": {"n": 2}}

    asyncio.run(main())
    assert calls == [1]


def test_get_or_set_of_an_entry_the_serializer_refuses_loads_it() -> None:
    ns = unique("memo")
    pickler = Cache(namespace=ns)
    pickler.set("k", {"a": 1})
    jsoner = Cache(namespace=ns, serializer="json")  # the same L1
    # Not unpickled: a miss for the JSON handle, loaded and overwritten
    # (it read None before, and never loaded).
    assert jsoner.get_or_set("k", lambda: {"b": 2}) == {"b": 2}
    assert pickler.get("k") == {"b": 2}


@pytest.mark.parametrize("alias", ["default", "tiered"])
def test_django_get_or_set_hits_hand_out_copies(alias: str) -> None:
    c = caches[alias]
    key = unique("memo")
    got = c.get_or_set(key, lambda: {"rows": [1]}, 60)
    got["rows"].append(2)
    again = c.get_or_set(key, lambda: {"rows": ["never"]}, 60)
    assert again == {"rows": [1]}
    again["rows"].append(3)
    assert c.get_or_set(key, lambda: {"rows": ["never"]}, 60) == {"rows": [1]}


def test_get_many_hands_out_copies_and_skips_refused_entries(cache: Cache) -> None:
    cache.set_many({"a": {"rows": [1]}, "b": "text", "c": Point(1)})
    for _ in range(2):
        got = cache.get_many(["a", "b", "c", "missing"])
        assert got == {"a": {"rows": [1]}, "b": "text", "c": Point(1)}
        got["a"]["rows"].append(2)
    assert cache.get_many(["b"])["b"] is cache.get_many(["b"])["b"]
    same: dict[str, Any] = {"redis_url": REDIS_URL, "op_timeout": 5.0} if cache._n.has_l2 else {}
    jsoner = Cache(namespace=cache.namespace, serializer="json", **same)  # the fixture's settings: same L1
    jsoner.set("j", [1])
    assert jsoner.get_many(["a", "j", "missing"]) == {"j": [1]}, "a pickle is refused, not returned"


def test_django_get_many_hands_out_copies() -> None:
    c = caches["tiered"]
    k1, k2 = unique("memo"), unique("memo")
    c.set_many({k1: {"x": [1]}, k2: 2})
    got = c.get_many([k1, k2, "absent"])
    assert got == {k1: {"x": [1]}, k2: 2}
    got[k1]["x"].append(2)
    assert c.get_many([k1]) == {k1: {"x": [1]}}


def test_an_entry_refused_for_budget_is_noted_not_retried() -> None:
    # When the budget cannot take a value, the entry is noted as decoded per
    # hit (64 bytes) so later hits do not walk and copy it to be refused again.
    budget = 1200
    c = Cache(namespace=unique("memo"), l1_memo_bytes=budget)
    v = {"id": 42, "payload": "x" * 200}
    c.set("a", v)
    assert c.get("a") == v
    kept = memo_bytes(c)
    # The test needs the second value not to fit, but to be tried (room for
    # its payload and the 64-byte note).
    assert len(pickle.dumps(v, pickle.HIGHEST_PROTOCOL)) + 64 <= budget - kept < kept
    c.set("b", v)
    for _ in range(3):
        got = c.get("b")
        assert got == v and got is not c.get("b")
        assert memo_bytes(c) == kept + 64


def test_copy_false_shares_one_object_of_any_type_and_stays_coherent(cache: Cache) -> None:
    kw: dict[str, Any] = {"redis_url": REDIS_URL, "op_timeout": 5.0} if cache._n.has_l2 else {}
    ns = unique("shared")
    shared = Cache(namespace=ns, copy=False, **kw)
    copying = Cache(namespace=ns, **kw)  # the same L1 (same location and namespace)
    for key, value in [("tree", NESTED), ("instance", Point(3)), ("deque", collections.deque([1, 2]))]:
        shared.set(key, value)
        first = shared.get(key)
        assert first == value
        assert shared.get(key) is first, f"{key}: every hit hands out the one decoded object"
        # A copying handle on the same L1 never receives the shared object.
        other = copying.get(key)
        assert other == value and other is not first
    # A write replaces what is shared; a delete ends it.
    shared.set("tree", {"v": 2})
    assert shared.get("tree") == {"v": 2}
    shared.delete("tree")
    assert shared.get("tree") is None


def test_copy_false_in_django_options() -> None:
    from stratacache.django.options import cache_kwargs, options

    kwargs = cache_kwargs("", options({"OPTIONS": {"COPY": False}}), "")
    assert kwargs["copy"] is False
    shared = Cache(**{**kwargs, "namespace": unique("shared")})
    shared.set("k", {"a": [1]})
    assert shared.get("k") is shared.get("k")
