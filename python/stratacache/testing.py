"""Helpers for testing code that uses stratacache (any test runner), and
the fixtures of the pytest plugin (``stratacache.pytest_plugin``, loaded by
pytest automatically once stratacache is installed)::

    from stratacache.testing import LoaderSpy, counting, isolated_cache, redis_down

    def test_profile_survives_a_redis_outage():
        cache = isolated_cache(redis_url="redis://127.0.0.1:6379")
        load = LoaderSpy(lambda: {"name": "Ada"})
        with counting(cache) as seen:
            assert cache.get_or_set("user:1", load) == {"name": "Ada"}
            assert cache.get_or_set("user:1", load) == {"name": "Ada"}
        assert load.calls == 1 and seen["l1_hits"] == 1
        with redis_down(cache):
            assert cache.get("user:1") == {"name": "Ada"}  # this process's L1 is what is left
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from . import Cache

T = TypeVar("T")

__all__ = ["AsyncLoaderSpy", "LoaderSpy", "StatsDelta", "counting", "isolated_cache", "redis_down", "unique_namespace"]


def unique_namespace(prefix: str = "test") -> str:
    """A namespace no other test uses (so tests never see each other's
    entries, tags or bus messages on a shared Redis)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def isolated_cache(redis_url: str | None = None, **options: Any) -> Cache:
    """A :class:`Cache` in a namespace of its own (so its L1, counters
    and Redis records are its own too): on ``redis_url``, or in-process
    without it. Close it (or use the pytest fixture, which also clears
    it)."""
    options.setdefault("namespace", unique_namespace())
    return Cache(redis_url=redis_url, **options)


def _native(cache: Any) -> Any:
    """The native handle of a Cache or of a Django StrataCache backend."""
    inner = getattr(cache, "_c", cache)
    n = getattr(inner, "_n", None)
    if n is None:
        raise TypeError(f"expected a stratacache Cache or Django StrataCache backend, got {type(cache).__name__}")
    return n


@contextmanager
def redis_down(*caches: Any) -> Iterator[None]:
    """Inside the block, every Redis command of ``caches`` (Cache objects
    or Django backends, and the handles sharing their state) fails as if
    Redis were unreachable, and L1 is not trusted, as in a real outage:
    for testing fail-open paths. Redis is back as the block ends."""
    natives = [_native(c) for c in caches]
    for n in natives:
        n.simulate_outage(True)
    try:
        yield
    finally:
        for n in natives:
            n.simulate_outage(False)


class StatsDelta(Mapping[str, int]):
    """The change of a cache's counters since :func:`counting` began:
    ``delta["l1_hits"]``, ``dict(delta)`` (counters that moved)."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._start: dict[str, int] = dict(cache.stats())

    def __getitem__(self, name: str) -> int:
        now = self._cache.stats()
        if name not in now:
            raise KeyError(name)
        return int(now[name]) - self._start.get(name, 0)

    def __iter__(self) -> Iterator[str]:
        now = self._cache.stats()
        return iter([k for k, v in now.items() if v != self._start.get(k, 0)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


@contextmanager
def counting(cache: Any) -> Iterator[StatsDelta]:
    """Counters of ``cache`` from here on (a Cache or Django backend)."""
    yield StatsDelta(cache)


class LoaderSpy(Generic[T]):
    """Wraps a loader and counts its calls (thread-safe): ``spy.calls``,
    ``spy.reset()``. For a coroutine function, :class:`AsyncLoaderSpy`."""

    def __init__(self, loader: Callable[[], T]) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self) -> T:
        with self._lock:
            self.calls += 1
        return self._loader()

    def reset(self) -> None:
        with self._lock:
            self.calls = 0


class AsyncLoaderSpy(Generic[T]):
    """:class:`LoaderSpy` for an async loader (``aget_or_set``)."""

    def __init__(self, loader: Callable[[], Awaitable[T]]) -> None:
        self._loader = loader
        self.calls = 0

    async def __call__(self) -> T:
        self.calls += 1
        return await self._loader()

    def reset(self) -> None:
        self.calls = 0
