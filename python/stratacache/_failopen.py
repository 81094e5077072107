"""Fail-open: Redis errors in plain operations are logged (rate-limited)
and answered as a miss, or as a write that did not happen, instead of
raised; a read-through answers with its loader's value. ``Cache(fail_open=True)``
and the Django backend's ``IGNORE_EXCEPTIONS`` (its default) are this one
behaviour."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ._logging import warn_l2
from .exceptions import RedisError

__all__ = ["answer", "inline", "install"]


def answer(enabled: bool, op: str, e: RedisError, fallback: Any) -> Any:
    """The answer of operation ``op`` that failed with ``e``: ``fallback``
    (logged) when fail-open is ``enabled``, else ``e`` is raised."""
    if not enabled:
        raise e
    warn_l2(op, f"{op} failed, answered as a miss (fail-open)", e)
    return fallback


def _fallback(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What a failed-open operation answers: a miss, or a write that did not happen."""
    base = name[1:] if name.startswith("a") and name[1:] in _FAIL_OPEN else name
    if base == "get":
        return kwargs.get("default", args[1] if len(args) > 1 else None)
    if base == "get_many":
        return {}  # a new one each time: callers may change it
    if base == "set_many":
        mapping = kwargs.get("mapping", args[0] if args else {})
        return list(mapping)
    return _FAIL_OPEN[base]


#: Plain operations that fail open, and their answer.
_FAIL_OPEN: dict[str, Any] = {
    "get": None,
    "get_many": {},
    "set": None,
    "set_many": None,
    "add": False,
    "delete": False,
    "delete_many": 0,
    "touch": False,
    "has_key": False,
    "clear": None,
    "invalidate_tags": None,
}


def _failing_open(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except RedisError as e:
                return answer(self._fail_open, name, e, _fallback(name, args, kwargs))

        return awrapper

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except RedisError as e:
            return answer(self._fail_open, name, e, _fallback(name, args, kwargs))

    return wrapper


F = TypeVar("F", bound=Callable[..., Any])


def inline(fn: F) -> F:
    """Mark an operation that calls :func:`answer` itself (the hottest
    ones: the wrapper's ``*args, **kwargs`` frame cost ~0.5 µs, half an
    L1 hit); :func:`install` leaves it unwrapped."""
    fn.__fails_open_inline__ = True  # type: ignore[attr-defined]
    return fn


def install(cls: type[Any]) -> None:
    """Wrap `cls`'s plain operations (and their async twins), except
    those marked :func:`inline`."""
    for name in [*_FAIL_OPEN, *(f"a{n}" for n in _FAIL_OPEN)]:
        fn = getattr(cls, name)
        if not getattr(fn, "__fails_open_inline__", False):
            setattr(cls, name, _failing_open(name, fn))
