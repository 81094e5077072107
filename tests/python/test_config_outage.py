"""Configuration errors that name the culprit, and behaviour while Redis is
unreachable: fail-open where asked, rate-limited logs, TLS named."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import stratacache
from conftest import REDIS_URL, unique
from stratacache import Cache, ConfigError, InvalidValueError, RedisError
from stratacache import _logging as ratelimit
from stratacache.django import StrataCache, check_caches


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}"  # nothing listens there


FAST = {"CONNECT_TIMEOUT": 0.2, "OP_TIMEOUT": 0.2}


@pytest.fixture(autouse=True)
def _fresh_log_state() -> None:
    ratelimit._state.clear()


def test_unknown_django_options_name_the_key_and_the_nearest() -> None:
    c = StrataCache("", {"OPTIONS": {"L1_MAX_BYTE": 1}})
    with pytest.raises(ImproperlyConfigured, match=r"'L1_MAX_BYTE'.*did you mean 'L1_MAX_BYTES'"):
        c.get("k")
    with pytest.raises(ImproperlyConfigured, match="goes in LOCATION"):
        StrataCache("", {"OPTIONS": {"PASSWORD": "hunter2"}}).set("k", 1)
    with pytest.raises(ImproperlyConfigured, match="CONNECT_TIMEOUT"):
        StrataCache("", {"OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1}}).get("k")
    with pytest.raises(ImproperlyConfigured, match="database number goes in LOCATION"):
        StrataCache("", {"OPTIONS": {"db": 1}}).get("k")
    # A bad SERIALIZER: ImproperlyConfigured at first use, for every method.
    bad = StrataCache("", {"OPTIONS": {"SERIALIZER": "yaml"}})
    for use in (lambda: bad.set("k", 1), lambda: bad.get("k"), lambda: bad.get_or_set("k", 1)):
        with pytest.raises(ImproperlyConfigured):
            use()


def test_system_check_names_the_option() -> None:
    with override_settings(
        CACHES={"default": {"BACKEND": "stratacache.django.StrataCache", "OPTIONS": {"L1_MAX_BYTES": "lots"}}}
    ):
        (error,) = check_caches()
    assert error.id == "stratacache.E001" and "L1_MAX_BYTES" in error.msg and "'lots'" in error.msg


def test_key_prefixes_keep_clear_apart() -> None:
    site = unique("site")
    a = StrataCache(REDIS_URL, {"KEY_PREFIX": f"{site}-a"})
    b = StrataCache(REDIS_URL, {"KEY_PREFIX": f"{site}-b"})
    a.set("k", "a")
    b.set("k", "b")
    a.clear()
    assert a.get("k") is None
    assert b.get("k") == "b", "another site's clear() left this one alone"
    assert StrataCache(REDIS_URL, {"KEY_PREFIX": "shop 1!"})._n.namespace.startswith("django.")


def test_django_incr_fails_open_as_a_missing_key() -> None:
    c = StrataCache(_dead_url(), {"OPTIONS": FAST})
    with pytest.raises(ValueError, match="not found"):
        c.incr("visits")
    with pytest.raises(ValueError, match="not found"):
        c.decr("visits")
    with pytest.raises(ValueError, match="not found"):
        asyncio.run(c.aincr("visits"))
    strict = StrataCache(_dead_url(), {"OPTIONS": {**FAST, "IGNORE_EXCEPTIONS": False}})
    with pytest.raises(RedisError):
        strict.incr("visits")


def test_redis_errors_are_logged_once_per_kind_per_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timeouts far above a refused connect's few microseconds: every call
    # fails with the one kind (refused), however slow a loaded machine is
    # to make the first attempt (at 200 ms, the first call once timed out).
    c = StrataCache(_dead_url(), {"OPTIONS": {"CONNECT_TIMEOUT": 5, "OP_TIMEOUT": 5}})
    with caplog.at_level(logging.WARNING, logger="stratacache"):
        for _ in range(1000):
            assert c.get("k", "dflt") == "dflt"
    lines = [r for r in caplog.records if "get failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    # Past the interval: one more line, with the count of those suppressed.
    later = ratelimit.time.monotonic() + ratelimit.INTERVAL + 1
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: later)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stratacache"):
        c.get("k")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "(999 more like it" in line


def test_plain_cache_fail_open() -> None:
    c = Cache(redis_url=_dead_url(), connect_timeout=0.2, op_timeout=0.2, fail_open=True, namespace=unique("fo"))
    assert c.get("k", "dflt") == "dflt"
    assert c.get_many(["a", "b"]) == {}
    assert c.set("k", 1) is None
    assert c.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert c.add("k", 1) is False and c.delete("k") is False and c.has_key("k") is False
    assert asyncio.run(c.aget("k", "adflt")) == "adflt"
    # A read-through answers with its loader's value.
    assert c.get_or_set("k", lambda: "loaded") == "loaded"
    strict = Cache(redis_url=_dead_url(), connect_timeout=0.2, op_timeout=0.2, namespace=unique("fo"))
    with pytest.raises(RedisError):
        strict.get("k")
    with pytest.raises(RedisError):
        strict.set("k", 1)


def test_tls_against_a_plaintext_server_says_tls() -> None:
    c = Cache(redis_url=REDIS_URL.replace("redis://", "rediss://"), connect_timeout=0.3, op_timeout=0.3)
    with pytest.raises(RedisError, match="TLS"):
        c.get("k")


def test_bad_option_values_name_the_option() -> None:
    with pytest.raises(ConfigError, match="l1_max_bytes"):
        Cache(l1_max_bytes=-1)
    with pytest.raises(ConfigError, match="ttl"):
        Cache(ttl="5m")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="ttl"):
        Cache().set("k", 1, ttl="5m")  # type: ignore[arg-type]
    assert issubclass(stratacache.ConfigError, ValueError)


def test_unknown_keyword_options_name_the_nearest_one() -> None:
    """Cache(...) and @cached(...) refuse an unknown keyword with
    ConfigError naming it and the nearest option (the core's rule, as in
    Django's OPTIONS and Node's E_CONFIG), not a bare TypeError."""
    from stratacache.fastapi import cached

    with pytest.raises(ConfigError, match=r"unknown Cache option 'l1_max_byte' \(did you mean 'l1_max_bytes'\?\)"):
        Cache(l1_max_byte=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"unknown Cache option 'password'$"):
        Cache(password="x")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"'stale_while_revalidat' \(did you mean 'stale_while_revalidate'\?\)"):
        cached(ttl=5, stale_while_revalidat=1)  # type: ignore[call-arg]


def test_fail_open_never_runs_a_failing_loader_twice() -> None:
    """Fail-open covers the cache's own Redis trouble, not a RedisError the
    loader raises (from another cache, say): that one reaches the caller
    after one loader call."""
    c = Cache(namespace=unique("fo"), fail_open=True)
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        raise RedisError("the loader's own")

    with pytest.raises(RedisError, match="the loader's own"):
        c.get_or_set("k", loader)
    assert calls == [1]

    async def aloader() -> str:
        calls.append(2)
        raise RedisError("the loader's own")

    with pytest.raises(RedisError, match="the loader's own"):
        asyncio.run(c.aget_or_set("k", aloader))
    assert calls == [1, 2]


def test_django_add_with_a_zero_timeout_is_not_added_when_redis_cannot_tell() -> None:
    c = StrataCache(_dead_url(), {"OPTIONS": FAST})
    assert c.add("k", 1, timeout=0) is False
    assert asyncio.run(c.aadd("k", 1, timeout=0)) is False
