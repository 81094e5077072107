"""Serializers: Python values <-> ``(format id, bytes)``.

The format id travels in the envelope, so a reader knows how an entry was
written. Integers (not bools) are always stored in the integer form, which
keeps ``incr``/``decr`` atomic in Redis and readable from Node. A reader
only decodes formats it trusts: an entry in a format the configured
serializer does not accept (for example a pickle when the serializer is
JSON) is treated as a miss, so nothing written by someone else is ever
unpickled by a JSON cache.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol

from .exceptions import ConfigError, SerializationError


class PicklingFailed(SerializationError, pickle.PicklingError):
    """A value could not be pickled: a ``SerializationError`` that is also a
    ``pickle.PicklingError``, as Django's own backends raise."""


__all__ = [
    "FORMAT_INT",
    "FORMAT_JSON",
    "FORMAT_MSGPACK",
    "FORMAT_PICKLE",
    "FORMAT_RAW",
    "FORMAT_UTF8",
    "FORMAT_V8",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "PicklingFailed",
    "RawSerializer",
    "Serializer",
    "get_serializer",
]

FORMAT_RAW = 0
FORMAT_PICKLE = 1
FORMAT_JSON = 2
FORMAT_MSGPACK = 3
FORMAT_V8 = 4
FORMAT_INT = 5
FORMAT_UTF8 = 6

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class Unreadable(Exception):
    """An entry in a format this serializer does not accept (a miss)."""


class Serializer(Protocol):
    """What a serializer provides."""

    name: str

    def dumps(self, value: Any) -> tuple[bytes, int]: ...

    def loads(self, fmt: int, data: bytes) -> Any: ...


def _common_dumps(value: Any) -> tuple[bytes, int] | None:
    if type(value) is int and _I64_MIN <= value <= _I64_MAX:
        return str(value).encode(), FORMAT_INT
    return None


#: What ``_common_loads`` reads: every built-in serializer reads these.
_COMMON_FORMATS = frozenset({FORMAT_RAW, FORMAT_JSON, FORMAT_INT, FORMAT_UTF8})


def _common_loads(fmt: int, data: bytes) -> Any:
    if fmt == FORMAT_INT:
        return int(data)
    if fmt == FORMAT_RAW:
        return bytes(data)
    if fmt == FORMAT_UTF8:
        return data.decode("utf-8")
    if fmt == FORMAT_JSON:
        return json.loads(data)
    raise Unreadable(fmt)


class PickleSerializer:
    """Python's pickle (the default, as in Django). Reads JSON too."""

    name = "pickle"
    #: Formats ``loads`` reads; the core treats entries in any other format
    #: as misses (a custom serializer may set this too).
    formats = _COMMON_FORMATS | {FORMAT_PICKLE}

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, value: Any) -> tuple[bytes, int]:
        # The type check first: a call less for every value but integers
        # (the hot path of every write).
        if type(value) is int and (common := _common_dumps(value)) is not None:
            return common
        try:
            return pickle.dumps(value, self.protocol), FORMAT_PICKLE
        except Exception as e:  # pickle raises many kinds
            raise PicklingFailed(f"cannot pickle {type(value).__name__}: {e!r}") from e

    def loads(self, fmt: int, data: bytes) -> Any:
        if fmt == FORMAT_PICKLE:
            return pickle.loads(data)
        return _common_loads(fmt, data)


class JsonSerializer:
    """UTF-8 JSON: shared with the Node package."""

    name = "json"
    formats = _COMMON_FORMATS

    def dumps(self, value: Any) -> tuple[bytes, int]:
        if type(value) is int and (common := _common_dumps(value)) is not None:
            return common
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(), FORMAT_JSON
        except (TypeError, ValueError) as e:
            raise SerializationError(f"cannot encode {type(value).__name__} as JSON: {e}") from e

    def loads(self, fmt: int, data: bytes) -> Any:
        return _common_loads(fmt, data)


class MsgpackSerializer:
    """MessagePack (``pip install msgpack``): shared with the Node package."""

    name = "msgpack"
    formats = _COMMON_FORMATS | {FORMAT_MSGPACK}

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError("the msgpack serializer needs `pip install msgpack`") from e
        self._m = msgpack

    def dumps(self, value: Any) -> tuple[bytes, int]:
        common = _common_dumps(value)
        if common is not None:
            return common
        try:
            return self._m.packb(value, use_bin_type=True), FORMAT_MSGPACK
        except (TypeError, ValueError, OverflowError) as e:
            raise SerializationError(f"cannot encode {type(value).__name__} as msgpack: {e}") from e

    def loads(self, fmt: int, data: bytes) -> Any:
        if fmt == FORMAT_MSGPACK:
            return self._m.unpackb(data, raw=False)
        return _common_loads(fmt, data)


class RawSerializer:
    """Bytes in, bytes out (``str`` is stored as UTF-8, ``int`` as an integer)."""

    name = "raw"
    formats = _COMMON_FORMATS

    def dumps(self, value: Any) -> tuple[bytes, int]:
        common = _common_dumps(value)
        if common is not None:
            return common
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value), FORMAT_RAW
        if isinstance(value, str):
            return value.encode("utf-8"), FORMAT_UTF8
        raise SerializationError(f"the raw serializer stores bytes, str or int, not {type(value).__name__}")

    def loads(self, fmt: int, data: bytes) -> Any:
        return _common_loads(fmt, data)


def accepted_formats(serializer: Serializer) -> list[int] | None:
    """The formats ``serializer`` reads (its ``formats`` attribute), for the
    core: entries in other formats are misses everywhere, so read-throughs
    load and overwrite them. ``None`` (a serializer without ``formats``):
    every format is handed to ``loads``."""
    formats = getattr(serializer, "formats", None)
    return None if formats is None else sorted(int(f) for f in formats)


def memo_key(serializer: Serializer, *, copy: bool = True) -> int:
    """Which decode a value kept beside an L1 entry came from: one id per
    built-in serializer (their ``loads`` depend on the bytes only), 0 for
    anything else, whose decoded values are never kept. With ``copy=False``
    the id of shared values: every hit hands out the one kept object."""
    key = _MEMO_KEYS.get(type(serializer), 0)
    return key | _SHARED if key and not copy else key


def get_serializer(spec: str | Serializer) -> Serializer:
    """A serializer by name (``pickle``, ``json``, ``msgpack``, ``raw``) or as given."""
    if not isinstance(spec, str):
        return spec
    table: dict[str, type] = {
        "pickle": PickleSerializer,
        "json": JsonSerializer,
        "msgpack": MsgpackSerializer,
        "raw": RawSerializer,
    }
    try:
        cls = table[spec]
    except KeyError:
        raise ConfigError(f"unknown serializer {spec!r}; use one of {sorted(table)}") from None
    return cls()  # type: ignore[no-any-return]


# The native memo's flag for values handed out without a copy.
_SHARED = 0x80
_MEMO_KEYS: dict[type, int] = {PickleSerializer: 1, JsonSerializer: 2, MsgpackSerializer: 3, RawSerializer: 4}
