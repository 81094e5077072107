"""stratacache: a tiered cache (in-process L1 + Redis L2) with stampede protection.

Public API::

    from stratacache import Cache
    cache = Cache(redis_url="redis://127.0.0.1:6379", namespace="shop")

Django: ``"BACKEND": "stratacache.django.StrataCache"`` (see ``stratacache.django``).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _native
from ._disabled import turned_off
from ._loading import Loaded, NoCache, Policy
from .client import DEFAULT, Cache, Ttl
from .exceptions import (
    CacheClosedError,
    ConfigError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    LeaseDroppedError,
    LoaderError,
    LoaderTimeoutError,
    NotAnIntegerError,
    RedisError,
    RedisTimeoutError,
    RedisUnavailableError,
    SerializationError,
    StrataCacheError,
    ValueTooLargeError,
    WaitTimeoutError,
)

__version__: str = _native.__version__


def _core(c: Any, what: str) -> Cache:
    inner = getattr(c, "_c", c)  # a Django backend holds its Cache
    if not isinstance(inner, Cache):
        raise TypeError(f"{what} takes stratacache caches, not {type(c).__name__}")
    return inner


@contextmanager
def disabled(*caches: Any) -> Iterator[None]:
    """Caching off in the block for ``caches`` (``Cache`` handles or
    Django ``StrataCache`` backends), or for every cache when none is
    given: see :meth:`Cache.disabled` for what each call does then."""
    with turned_off(frozenset(_core(c, "disabled")._identity for c in caches) if caches else None):
        yield


def metrics_text(*caches: Any) -> str:
    """One Prometheus exposition (text format 0.0.4) of several caches:
    each metric family once, a sample per namespace (``Cache`` handles or
    Django ``StrataCache`` backends). What the ready-made endpoints serve
    (``stratacache.django.urls``, ``stratacache.fastapi.metrics_route``)."""
    return _native.metrics_text([_core(c, "metrics_text")._n for c in caches])


__all__ = [
    "DEFAULT",
    "Cache",
    "CacheClosedError",
    "ConfigError",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyNotFoundError",
    "LeaseDroppedError",
    "Loaded",
    "LoaderError",
    "LoaderTimeoutError",
    "NoCache",
    "NotAnIntegerError",
    "Policy",
    "RedisError",
    "RedisTimeoutError",
    "RedisUnavailableError",
    "SerializationError",
    "StrataCacheError",
    "Ttl",
    "ValueTooLargeError",
    "WaitTimeoutError",
    "__version__",
    "disabled",
    "metrics_text",
]
