"""Static types of the public API, checked by ``mypy --strict`` in ``make
lint`` (never run): each ``assert_type`` fails the check when the API's
overloads infer something else."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # the package's floor, 3.10
    from typing_extensions import assert_type

from stratacache import Cache, NoCache

cache = Cache()


def load() -> int:
    return 1


def maybe() -> int | NoCache[int]:
    return NoCache(1)


async def aload() -> str:
    return "x"


async def amaybe() -> str | NoCache[str]:
    return NoCache("x")


async def types() -> None:
    assert_type(cache.get_or_set("k", load), int)
    assert_type(cache.get_or_set("k", lambda: load(), ttl=60), int)
    assert_type(cache.get_or_set("k", maybe), int)
    assert_type(cache.get_or_set("k", lambda: NoCache(3)), int)
    assert_type(cache.get_or_set("k", 5), int)
    assert_type(await cache.aget_or_set("k", aload), str)
    assert_type(await cache.aget_or_set("k", amaybe), str)
    assert_type(await cache.aget_or_set("k", maybe), int)
    assert_type(await cache.aget_or_set("k", lambda: 2.5), float)
