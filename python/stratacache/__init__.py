"""stratacache: a tiered cache (in-process L1 + Redis L2) with stampede protection.

Public API::

    from stratacache import Cache
    cache = Cache(redis_url="redis://127.0.0.1:6379", namespace="shop")

Django: ``"BACKEND": "stratacache.django.StrataCache"`` (see ``stratacache.django``).
"""

from . import _native
from ._loading import NoCache, Policy
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

__all__ = [
    "DEFAULT",
    "Cache",
    "CacheClosedError",
    "ConfigError",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyNotFoundError",
    "LeaseDroppedError",
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
]
