"""The Django backend: Django's cache API semantics on every configuration
(L1-only, tiered, Cluster), and the framework features built on caches,
driven through Django's test client."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings

import pytest
from django.core.cache import CacheKeyWarning, caches
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Template
from django.test import Client, override_settings

from conftest import CACHE_ALIASES
from stratacache.django import StrataCache


@pytest.fixture(params=CACHE_ALIASES)
def cache(request: pytest.FixtureRequest) -> StrataCache:
    c = caches[request.param]
    assert isinstance(c, StrataCache)
    c.clear()
    return c


def test_basic_semantics(cache: StrataCache) -> None:
    assert cache.get("k") is None
    assert cache.get("k", "default") == "default"
    cache.set("k", {"a": 1})
    assert cache.get("k") == {"a": 1}
    assert cache.add("k", "other") is False
    assert cache.add("new", "v") is True
    assert cache.has_key("k")
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get_many(["new", "nope"]) == {"new": "v"}
    assert cache.set_many({"a": 1, "b": 2}) == []
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b"]) == {}
    cache.set("none", None)
    assert cache.get("none", "default") is None


def test_timeouts(cache: StrataCache) -> None:
    cache.set("zero", "v", 0)
    assert cache.get("zero") is None
    assert cache.add("zero-add", "v", 0) is True
    assert cache.get("zero-add") is None
    cache.set("forever", "v", None)
    assert cache.get("forever") == "v"
    cache.set("neg", "v", -1)
    assert cache.get("neg") is None
    cache.set("short", "v", 0.2)
    assert cache.touch("short", 60) is True
    assert cache.touch("nope", 60) is False
    cache.set("expiring", "v", 0.2)
    time.sleep(0.3)  # past the deadline
    assert cache.get("expiring") is None
    assert cache.get("short") == "v"
    assert cache.touch("short", 0) is True
    assert cache.get("short") is None


def test_incr_decr(cache: StrataCache) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.decr("answer", 2) == 40
    assert cache.get("answer") == 40
    with pytest.raises(ValueError):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError):
        cache.decr("does_not_exist")
    cache.set("big", 2**70)
    assert cache.incr("big") == 2**70 + 1, "beyond 64 bits: Django's read-modify-write"
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5


def test_versions_and_prefix() -> None:
    cache = caches["prefixed"]
    cache.clear()
    cache.set("k", "v2")
    assert cache.get("k") == "v2"
    assert cache.get("k", version=1) is None
    cache.set("k", "v1", version=1)
    assert cache.incr_version("k", version=1) == 2
    assert cache.get("k") == "v1"
    assert cache.get("k", version=1) is None
    assert cache.decr_version("k") == 1
    assert cache.get("k", version=1) == "v1"


def test_key_validation_warns_like_django(cache: StrataCache) -> None:
    with pytest.warns(CacheKeyWarning):
        cache.set("key with spaces", "v")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        assert cache.get("key with spaces") == "v"
        cache.set("k" * 300, "long")
        assert cache.get("k" * 300) == "long"


def test_get_or_set_is_stampede_safe(cache: StrataCache) -> None:
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(100)
    results: list[object] = []

    def load() -> str:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)
        return "expensive"

    def worker() -> None:
        barrier.wait()
        # Django's cache handler hands each thread its own backend object:
        # they must still coalesce onto one load.
        results.append(caches[cache._alias_for_test].get_or_set("hot", load, 60))  # type: ignore[attr-defined]

    cache._alias_for_test = next(a for a in CACHE_ALIASES if caches[a] is cache)  # type: ignore[attr-defined]
    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert results == ["expensive"] * 100
    assert cache.get_or_set("hot", lambda: "other") == "expensive"
    assert cache.get_or_set("plain-default", "value") == "value"
    assert cache.get_or_set("none-default", None) is None


async def test_async_api_is_native(cache: StrataCache) -> None:
    await cache.aset("k", [1, 2])
    assert await cache.aget("k") == [1, 2]
    assert await cache.aadd("k", 0) is False
    assert await cache.ahas_key("k") is True
    assert await cache.aget_many(["k", "x"]) == {"k": [1, 2]}
    assert await cache.aset_many({"n": 1}) == []
    assert await cache.aincr("n", 5) == 6
    assert await cache.adecr("n") == 5
    with pytest.raises(ValueError):
        await cache.aincr("missing")
    assert await cache.atouch("k", 60) is True
    assert await cache.adelete("k") is True
    await cache.adelete_many(["n"])
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return "v"

    assert await asyncio.gather(*[cache.aget_or_set("ak", load) for _ in range(50)]) == ["v"] * 50
    assert calls == 1
    await cache.aclear()
    assert await cache.aget("ak") is None
    # Not sync_to_async wrappers: Django's defaults would be.
    from django.core.cache.backends.base import BaseCache

    assert StrataCache.aget is not BaseCache.aget and StrataCache.aget_or_set is not BaseCache.aget_or_set


def test_clear_only_touches_its_own_namespace() -> None:
    tiered, prefixed = caches["tiered"], caches["prefixed"]
    tiered.set("x", 1)
    prefixed.set("x", 2)
    tiered.clear()
    assert tiered.get("x") is None
    assert prefixed.get("x") == 2


def test_cache_page_and_middleware_through_the_test_client() -> None:
    client = Client()
    first = client.get("/page/").content
    assert client.get("/page/").content == first, "served from the cache"
    caches["tiered"].clear()
    assert client.get("/page/").content != first
    with override_settings(
        MIDDLEWARE=[
            "django.middleware.cache.UpdateCacheMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.cache.FetchFromCacheMiddleware",
        ],
        CACHE_MIDDLEWARE_ALIAS="cluster",
        CACHE_MIDDLEWARE_SECONDS=60,
        CACHE_MIDDLEWARE_KEY_PREFIX="site",
    ):
        client = Client()  # a handler built with the overridden middleware
        a = client.get("/plain/").content
        assert client.get("/plain/").content == a
        assert client.get("/plain/", {"q": 1}).content != a, "different URL, different entry"


@pytest.mark.parametrize("alias", CACHE_ALIASES)
def test_sessions_on_the_cache(alias: str) -> None:
    with override_settings(SESSION_CACHE_ALIAS=alias):
        client = Client()
        assert client.get("/session/get/").content == b"<empty>"
        client.get("/session/set/", {"item": "espresso"})
        assert client.get("/session/get/").content == b"espresso"
        assert Client().get("/session/get/").content == b"<empty>", "another visitor has no cart"


@pytest.mark.parametrize("alias", CACHE_ALIASES)
def test_template_fragment_cache(alias: str) -> None:
    caches[alias].clear()
    t = Template('{% load cache %}{% cache 60 frag using="' + alias + '" %}n={{ n }}{% endcache %}')
    assert t.render(Context({"n": 1})) == "n=1"
    assert t.render(Context({"n": 2})) == "n=1"


def test_system_checks_report_bad_configuration() -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from stratacache.django import check_caches

    assert check_caches() == [], "the test settings are valid"
    bad = {
        "default": {"BACKEND": "stratacache.django.StrataCache", "LOCATION": "", "OPTIONS": {"NAMESPACE": "no:colons"}},
        "twin_a": {"BACKEND": "stratacache.django.StrataCache", "LOCATION": "redis://127.0.0.1:1"},
        "twin_b": {"BACKEND": "stratacache.django.StrataCache", "LOCATION": "redis://127.0.0.1:1"},
        "url": {"BACKEND": "stratacache.django.StrataCache", "LOCATION": "http://nope"},
    }
    with override_settings(CACHES=bad):
        ids = sorted(m.id for m in check_caches())
        assert ids == ["stratacache.E001", "stratacache.E001", "stratacache.W001"]
        with pytest.raises(SystemCheckError, match=r"(?s)stratacache\.E001.*namespace"):
            call_command("check")
        with pytest.raises(ImproperlyConfigured):
            caches["default"].get("k")


def test_bad_configuration_is_reported_clearly() -> None:
    # With the stratacache app installed, the system check reports it and
    # the alias fails on use; without it, construction fails at once.
    deferred = StrataCache("", {"OPTIONS": {"NAMESPACE": "bad:ns"}})
    with pytest.raises(ImproperlyConfigured, match="namespace"):
        deferred.get("k")
    with override_settings(INSTALLED_APPS=["django.contrib.sessions", "django.contrib.contenttypes"]):
        with pytest.raises(ImproperlyConfigured, match="namespace"):
            StrataCache("", {"OPTIONS": {"NAMESPACE": "bad:ns"}})
        with pytest.raises(ImproperlyConfigured, match="CLUSTER"):
            StrataCache("redis://a:1,redis://b:2", {})
        with pytest.raises(ImproperlyConfigured, match="not valid"):
            StrataCache("http://nope", {})
        with pytest.raises(ImproperlyConfigured, match="serializer"):
            StrataCache("", {"OPTIONS": {"SERIALIZER": "yaml"}})


def test_fail_open_and_raise_modes() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"redis://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    opts = {"CONNECT_TIMEOUT": 0.2, "OP_TIMEOUT": 0.3}
    open_cache = StrataCache(url, {"OPTIONS": {**opts, "NAMESPACE": "failopen"}})
    assert open_cache.get("k", "dflt") == "dflt"
    open_cache.set("k", "v")  # swallowed, logged; kept in this process's L1
    assert open_cache.get_or_set("k", lambda: "loaded") == "v"
    assert open_cache.get_or_set("other", lambda: "loaded") == "loaded"
    assert open_cache.set_many({"a": 1}) == ["a"]
    from stratacache import RedisError

    strict = StrataCache(url, {"OPTIONS": {**opts, "NAMESPACE": "strict", "IGNORE_EXCEPTIONS": False}})
    with pytest.raises(RedisError):
        strict.get("k")


def test_signed_by_default_with_secret_key_derived_key() -> None:
    from conftest import REDIS_URL
    from stratacache import Cache

    cache = caches["tiered"]
    cache.set("signed", {"v": 1})
    ns = cache._n.namespace
    # A value planted by someone without the key is never unpickled.
    attacker = Cache(namespace=ns, redis_url=REDIS_URL, l1=False, signing_key=b"guess")
    key = cache.make_key("planted")
    attacker.set(key, {"evil": True})
    assert cache.get("planted") is None
    assert cache.get("signed") == {"v": 1}


@pytest.mark.parametrize("location", ["", "redis"])
def test_get_or_set_policy_from_options(location: str) -> None:
    """FAIL_SAFE + GRACE from OPTIONS: a failing loader gets the stale
    value; HARD_TIMEOUT bounds the wait; NONE_TTL=0 never caches None."""
    from conftest import REDIS_URL, unique
    from stratacache import LoaderTimeoutError

    opts = {
        "NAMESPACE": unique("djpol"),
        "GRACE": 60,
        "FAIL_SAFE": True,
        "HARD_TIMEOUT": 0.05,
        "NONE_TTL": 0,
        "OP_TIMEOUT": 5.0,
    }
    c = StrataCache(REDIS_URL if location else "", {"OPTIONS": opts})
    c.set("k", "old", timeout=0.001)
    time.sleep(0.005)
    assert c.get("k") is None

    def failing() -> str:
        raise ConnectionError("origin down")

    assert c.get_or_set("k", failing, timeout=60) == "old"
    with pytest.raises(ConnectionError):
        c.get_or_set("k2", failing, timeout=60, fail_safe=False)
    release = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "late"

    with pytest.raises(LoaderTimeoutError):
        c.get_or_set("slow", slow, timeout=60)
    release.set()
    calls: list[int] = []

    def nothing() -> None:
        calls.append(1)

    assert c.get_or_set("none", nothing) is None
    assert c.get_or_set("none", nothing) is None
    assert calls == [1, 1], "NONE_TTL=0: None is never cached"


def test_warm_through_the_django_api(cache: StrataCache) -> None:
    cache.set("have", "kept")
    asked: list[list[str]] = []

    def load_many(keys: list[str]) -> dict[str, str]:
        asked.append(sorted(keys))
        return {k: k.upper() for k in keys}

    assert cache.warm(["have", "a", "b"], load_many) == 2
    assert asked == [["a", "b"]], "Django keys in, Django keys out (prefix/version applied inside)"
    assert cache.get("a") == "A" and cache.get("have") == "kept"
    assert asyncio.run(cache.awarm(["a", "c"], load_many)) == 1


def test_system_check_reports_bad_policy_options() -> None:
    from stratacache.django import check_caches

    entry = {"BACKEND": "stratacache.django.StrataCache", "LOCATION": "", "OPTIONS": {"ON_WAIT_TIMEOUT": "retry"}}
    bad = {"default": entry}
    with override_settings(CACHES=bad):
        msgs = check_caches()
        assert [m.id for m in msgs] == ["stratacache.E001"] and "ON_WAIT_TIMEOUT" in msgs[0].msg
