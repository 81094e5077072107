"""Exceptions raised by stratacache.

Every exception carries the core's stable ``code`` (the same string the
Node package puts in ``err.code``). Each class also inherits from the
builtin it resembles, so existing ``except ValueError`` / ``except
TimeoutError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "CacheClosedError",
    "ConfigError",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyNotFoundError",
    "LeaseDroppedError",
    "LoaderError",
    "LoaderTimeoutError",
    "NotAnIntegerError",
    "RedisError",
    "RedisTimeoutError",
    "RedisUnavailableError",
    "SerializationError",
    "StrataCacheError",
    "ValueTooLargeError",
    "WaitTimeoutError",
]


class StrataCacheError(Exception):
    """Base class of every stratacache error."""

    code: str = "E_STRATACACHE"


class ConfigError(StrataCacheError, ValueError):
    """The configuration is invalid; the message names the option."""

    code = "E_CONFIG"


class InvalidKeyError(StrataCacheError, ValueError):
    """A key is empty or otherwise unusable."""

    code = "E_INVALID_KEY"


class ValueTooLargeError(StrataCacheError, ValueError):
    """A value exceeds ``max_value_bytes``."""

    code = "E_VALUE_TOO_LARGE"


class InvalidValueError(StrataCacheError, ValueError):
    """A value or argument has the wrong shape."""

    code = "E_INVALID_VALUE"


class SerializationError(InvalidValueError):
    """A value could not be serialized (nothing was stored)."""

    code = "E_INVALID_VALUE"


class RedisError(StrataCacheError):
    """Redis answered with an error (base of the Redis errors)."""

    code = "E_L2"


class RedisUnavailableError(RedisError, ConnectionError):
    """Redis could not be reached."""

    code = "E_L2_UNAVAILABLE"


class RedisTimeoutError(RedisError, TimeoutError):
    """A Redis command did not answer within ``op_timeout``."""

    code = "E_L2_TIMEOUT"


class KeyNotFoundError(StrataCacheError, KeyError):
    """``incr``/``decr`` on a missing key."""

    code = "E_NOT_FOUND"

    def __str__(self) -> str:  # KeyError's repr-quoting is unhelpful here
        return str(self.args[0]) if self.args else "key not found"


class NotAnIntegerError(StrataCacheError, TypeError):
    """``incr``/``decr`` on a non-integer, or the result overflows 64 bits."""

    code = "E_NOT_INTEGER"


class LoaderError(StrataCacheError):
    """A loader failed (raised only when the original exception is unavailable)."""

    code = "E_LOADER"


class LeaseDroppedError(StrataCacheError):
    """The caller loading this key went away without finishing; retry."""

    code = "E_LEASE_DROPPED"


class WaitTimeoutError(StrataCacheError, TimeoutError):
    """Waiting for another caller's load took longer than ``wait_timeout``."""

    code = "E_WAIT_TIMEOUT"


class LoaderTimeoutError(StrataCacheError, TimeoutError):
    """The load exceeded the hard timeout and no stale value could be served.

    The load itself goes on in the background and still fills the cache.
    """

    code = "E_LOADER_TIMEOUT"


class CacheClosedError(StrataCacheError):
    """The cache was closed."""

    code = "E_CLOSED"


# Used by the native module to raise the class matching a core error code.
_BY_CODE: dict[str, type[StrataCacheError]] = {
    cls.code: cls
    for cls in (
        ConfigError,
        InvalidKeyError,
        ValueTooLargeError,
        InvalidValueError,
        RedisError,
        RedisUnavailableError,
        RedisTimeoutError,
        KeyNotFoundError,
        NotAnIntegerError,
        LoaderError,
        LeaseDroppedError,
        WaitTimeoutError,
        LoaderTimeoutError,
        CacheClosedError,
    )
}
