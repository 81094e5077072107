"""pytest plugin (registered under the ``pytest11`` entry point, so pytest
loads it once stratacache is installed): fixtures for testing code that
uses stratacache.

- ``stratacache_cache``: a :class:`~stratacache.Cache` in a namespace of its
  own, on the Redis of ``--stratacache-redis URL`` (or
  ``$STRATACACHE_TEST_REDIS``), else in-process; cleared and closed after
  the test.
- ``stratacache_redis_down``: :func:`stratacache.testing.redis_down`, a
  context manager making the given caches' Redis unreachable for a block.
- ``stratacache_counting``: :func:`stratacache.testing.counting`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from . import Cache
from .testing import counting, isolated_cache, redis_down


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stratacache")
    group.addoption(
        "--stratacache-redis",
        default=None,
        help="Redis URL for the stratacache_cache fixture (default: $STRATACACHE_TEST_REDIS, else in-process)",
    )


@pytest.fixture
def stratacache_redis_url(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL the fixtures use, or None for in-process caches."""
    url: str | None = request.config.getoption("--stratacache-redis") or os.environ.get("STRATACACHE_TEST_REDIS")
    return url or None


@pytest.fixture
def stratacache_cache(stratacache_redis_url: str | None) -> Iterator[Cache]:
    """A cache in a namespace no other test uses; cleared and closed after."""
    cache = isolated_cache(stratacache_redis_url)
    try:
        yield cache
    finally:
        try:
            cache.clear()
        finally:
            cache.close()


@pytest.fixture
def stratacache_redis_down() -> Any:
    """``with stratacache_redis_down(cache): ...``: Redis unreachable for the block."""
    return redis_down


@pytest.fixture
def stratacache_counting() -> Any:
    """``with stratacache_counting(cache) as seen: ...; seen["l1_hits"]``."""
    return counting
