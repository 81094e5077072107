"""The test kit as a user meets it: a project of their own whose tests use
the pytest plugin's fixtures and stratacache.testing, run by pytest in a
subprocess (the plugin loads from the installed package's entry point);
and Django's override_settings with this backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.core.cache import caches
from django.test import override_settings

from conftest import REDIS_URL, unique

USER_TESTS = """
import asyncio

import pytest

from stratacache import Cache, RedisUnavailableError
from stratacache.testing import AsyncLoaderSpy, LoaderSpy, counting, isolated_cache, redis_down


def test_fixture_cache_is_isolated_and_on_redis(stratacache_cache, stratacache_redis_url):
    assert stratacache_redis_url is not None
    assert stratacache_cache.namespace.startswith("test-")
    stratacache_cache.set("k", 1)
    other = isolated_cache(stratacache_redis_url)
    assert other.get("k") is None  # another namespace
    other.close()


def test_loader_spy_and_counting(stratacache_cache):
    load = LoaderSpy(lambda: {"name": "Ada"})
    with counting(stratacache_cache) as seen:
        assert stratacache_cache.get_or_set("user:1", load) == {"name": "Ada"}
        assert stratacache_cache.get_or_set("user:1", load) == {"name": "Ada"}
    assert load.calls == 1
    assert seen["l1_hits"] == 1
    assert seen["loads_completed"] == 1
    assert "l2_errors" not in dict(seen)


def test_async_spy(stratacache_cache):
    load = AsyncLoaderSpy(lambda: asyncio.sleep(0, result=7))

    async def main():
        assert await stratacache_cache.aget_or_set("n", load) == 7
        assert await stratacache_cache.aget_or_set("n", load) == 7

    asyncio.run(main())
    assert load.calls == 1


def test_redis_down_for_a_block(stratacache_cache, stratacache_redis_down):
    stratacache_cache.set("k", "v")
    with stratacache_redis_down(stratacache_cache), counting(stratacache_cache) as seen:
        # What this process's L1 holds is all that is left, as in a real outage.
        assert stratacache_cache.get("k") == "v"
        assert seen["l1_outage_hits"] == 1
        with pytest.raises(RedisUnavailableError, match="simulated outage"):
            stratacache_cache.get("absent")
    stratacache_cache.set("absent", "now")  # back as the block ends
    assert stratacache_cache.get("absent") == "now"


def test_fail_open_paths(stratacache_redis_url):
    cache = isolated_cache(stratacache_redis_url, fail_open=True)
    cache.set("k", "v")
    load = LoaderSpy(lambda: "fresh")
    with redis_down(cache):
        assert cache.get("absent") is None  # fail-open: a miss, no exception
        assert cache.get_or_set("other", load) == "fresh"  # the loader runs
    assert load.calls == 1
    assert cache.get("k") == "v"
    cache.close()


def test_in_process_without_redis():
    cache = isolated_cache()
    with redis_down(cache):  # no Redis: nothing to take down
        cache.set("k", 1)
        assert cache.get("k") == 1
    cache.close()
"""


def test_pytest_plugin_in_a_users_project(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "STRATACACHE_TEST_REDIS": REDIS_URL},
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6 passed" in run.stdout, run.stdout


def test_override_settings_swaps_the_backend() -> None:
    ns = unique("override")
    before = caches["default"]
    conf = {
        "default": {"BACKEND": "stratacache.django.StrataCache", "LOCATION": REDIS_URL, "OPTIONS": {"NAMESPACE": ns}}
    }
    with override_settings(CACHES=conf):
        inside = caches["default"]
        assert inside is not before
        assert inside._c.namespace == ns
        inside.set("k", "in the override")
        assert caches["default"].get("k") == "in the override"
    after = caches["default"]
    assert after._c.namespace == before._c.namespace
    assert after.get("k") is None
