"""How the plain API's arguments cross to the native layer: TTLs
(``DEFAULT``, ``None`` = never, seconds), numeric options checked with
errors naming the option, and warm-up's per-key or all-at-once loaders."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from .exceptions import ConfigError, InvalidValueError

__all__ = ["DEFAULT", "Ttl"]


class _Default:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default()
"""Use the cache's default TTL."""

Ttl = float | int | None | _Default
"""Seconds; ``None`` means never expire; ``DEFAULT`` the cache's default; ``<= 0`` do not cache."""


def _native_ttl(ttl: Ttl) -> float | None:
    if ttl is DEFAULT:
        return None
    if ttl is None:
        return math.inf
    try:
        return float(ttl)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidValueError(f"ttl must be a number of seconds or None, not {ttl!r}") from None


def _refuse_unknown(unknown: dict[str, Any], options_of: Callable[..., Any], what: str) -> None:
    """An unknown keyword option: ConfigError naming it and the nearest of
    `options_of`'s keyword parameters (the core's rule), not a bare
    TypeError."""
    import inspect

    from ._native import nearest_name

    params = inspect.signature(options_of).parameters.values()
    known = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    for k in unknown:
        near = nearest_name(k, known)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise ConfigError(f"unknown {what} option {k!r}{hint}")


def _check_options(**numbers: Any) -> None:
    """Numeric options: the error names the option (not a bare ValueError or
    an OverflowError from the native layer)."""
    for name, v in numbers.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{name} must be a number, not {v!r}")
        if not v >= 0:
            raise ConfigError(f"{name} must be >= 0, not {v!r}")


def _edge_purge_json(edges: Any) -> str | None:
    """The edges to purge (``edge_purge``: a list of dicts, one per edge,
    each with a ``kind``) as the JSON the core parses and checks; ``None``
    for none."""
    if edges is None:
        return None
    if isinstance(edges, dict):
        edges = [edges]
    if isinstance(edges, (str, bytes)) or not isinstance(edges, (list, tuple)):
        # Its type only: the value may hold credentials.
        raise ConfigError(f"edge_purge must be a list of dicts, one per edge, not a {type(edges).__name__}")
    import json

    try:
        return json.dumps(list(edges))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"edge_purge: a value is not JSON ({type(e).__name__})") from None


def _load_many(
    loader: Callable[[str], Any] | None, load_many: Callable[[list[str]], Any] | None
) -> Callable[[list[str]], Any]:
    if (loader is None) == (load_many is None):
        raise TypeError("give exactly one of loader (per key) or load_many (all keys at once)")
    if load_many is not None:
        return load_many
    assert loader is not None
    one = loader
    return lambda keys: {k: one(k) for k in keys}
