"""Blocks of code with caching off (``Cache.disabled()``,
``stratacache.disabled()``): which caches are off in the current context.
What each operation does with caching off is the core's rule
(``Cache::bypassing``); a cache covered here sends its calls to its native
handle with caching off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final


class Off:
    """The caches turned off in a context, by identity (the core's
    ``Cache::identity``: Redis location and namespace, so every handle on
    the same data is covered); ``caches`` is ``None`` for all."""

    __slots__ = ("caches",)

    def __init__(self, caches: frozenset[str] | None) -> None:
        self.caches: Final = caches

    def covers(self, identity: str) -> bool:
        return self.caches is None or identity in self.caches


#: ``None`` while caching is on everywhere (the hot paths check only this).
#: Tasks started in the block inherit it, and so do the threads the cache
#: runs loaders on; threads you start yourself do not.
caching_off: ContextVar[Off | None] = ContextVar("stratacache_off", default=None)


@contextmanager
def turned_off(caches: frozenset[str] | None) -> Iterator[None]:
    """Turn the caches of these identities (``None``: every cache) off for
    the block, on top of what an enclosing block turned off."""
    outer = caching_off.get()
    if caches is None or (outer is not None and outer.caches is None):
        scope = Off(None)
    else:
        inherited: frozenset[str] = outer.caches if outer is not None and outer.caches is not None else frozenset()
        scope = Off(caches | inherited)
    token = caching_off.set(scope)
    try:
        yield
    finally:
        caching_off.reset(token)
