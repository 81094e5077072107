"""Many keys at once: ``warm`` / ``awarm`` (fill the keys that need it
through their leases) and ``get_or_set_many`` / ``aget_or_set_many``'s
``load_many_through`` / ``aload_many_through`` (the cached values, one
``load_many`` call for the rest, then the keys another caller is loading).
The single-key protocol they build on is in ``_loading``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from . import _native
from ._loading import (
    Adapt,
    Dumps,
    Loaded,
    NoCache,
    _abandon_quietly,
    _acall_tracked,
    _call_tracked,
    _outcome,
    _plain,
    _scope,
)


def warm(
    n: _native.Cache,
    keys: list[str],
    load_many: Callable[[list[str]], Any],
    dumps: Dumps,
    ttl: float | None,
    grace: float,
    force: bool,
) -> int:
    """Load the keys that need it through their leases, in one
    ``load_many`` call; returns how many were stored."""
    leases = n.try_leases(keys, force)
    if not leases:
        return 0
    deps = _scope(leases[0])
    try:
        values = _call_tracked(lambda: load_many([lease.key for lease in leases]), deps)
        items, singles = _warm_items(leases, values, dumps)
    except BaseException as e:
        for lease in leases:
            _abandon_quietly(lease, e)
        raise
    stored = _settle_singles(singles, items, ttl, grace, None, deps)
    return n.complete_many(items, ttl, grace, deps) + stored


async def awarm(
    n: _native.Cache,
    keys: list[str],
    load_many: Callable[[list[str]], Any],
    dumps: Dumps,
    ttl: float | None,
    grace: float,
    force: bool,
) -> int:
    leases = await n.atry_leases(keys, force)
    if not leases:
        return 0
    deps = _scope(leases[0])
    try:
        values = await _acall_tracked(lambda: load_many([lease.key for lease in leases]), deps)
        items, singles = _warm_items(leases, values, dumps)
    except BaseException as e:
        for lease in leases:
            _abandon_quietly(lease, e)
        raise
    stored = await _asettle_singles(singles, items, ttl, grace, None, deps)
    return await n.acomplete_many(items, ttl, grace, deps) + stored


def load_many_through(
    n: _native.Cache,
    keys: list[str],
    load_many: Callable[[list[str]], Any],
    dumps: Dumps,
    loads: Callable[[tuple[int, bytes]], Any],
    ttl: float | None,
    tags: list[str] | None,
    one: Callable[[str], Any],
) -> dict[str, Any]:
    """``get_or_set_many``: the fresh values, one ``load_many`` call for
    the keys nobody is loading (through their leases), then the keys being
    loaded elsewhere through ``one(key)`` (a read-through: it waits for
    that load). Keys ``load_many`` leaves out are not in the result."""
    out, leases, busy = _sorted_many(keys, n.lookup_many(keys), loads)
    if leases:
        deps = _scope(leases[0])
        try:
            values = _call_tracked(lambda: load_many([lease.key for lease in leases]), deps)
            items, singles = _warm_items(leases, values, dumps)
        except BaseException as e:
            for lease in leases:
                _abandon_quietly(lease, e)
            raise
        _settle_singles(singles, items, ttl, 0.0, tags, deps)
        n.complete_many(items, ttl, 0.0, deps, tags)
        out.update(_loaded(leases, values))
    for k in busy:
        out[k] = one(k)
    return _in_order(keys, out)


async def aload_many_through(
    n: _native.Cache,
    keys: list[str],
    load_many: Callable[[list[str]], Any],
    dumps: Dumps,
    loads: Callable[[tuple[int, bytes]], Any],
    ttl: float | None,
    tags: list[str] | None,
    one: Callable[[str], Awaitable[Any]],
) -> dict[str, Any]:
    """:func:`load_many_through` for asyncio (``load_many`` may be async)."""
    out, leases, busy = _sorted_many(keys, await n.alookup_many(keys), loads)
    if leases:
        deps = _scope(leases[0])
        try:
            values = await _acall_tracked(lambda: load_many([lease.key for lease in leases]), deps)
            items, singles = _warm_items(leases, values, dumps)
        except BaseException as e:
            for lease in leases:
                _abandon_quietly(lease, e)
            raise
        await _asettle_singles(singles, items, ttl, 0.0, tags, deps)
        await n.acomplete_many(items, ttl, 0.0, deps, tags)
        out.update(_loaded(leases, values))
    for k in busy:
        out[k] = await one(k)
    return _in_order(keys, out)


#: What a key ``load_many`` left out reads as (never returned).
_LEFT_OUT: Final = object()


def _sorted_many(
    keys: list[str], found: list[Any], loads: Callable[[tuple[int, bytes]], Any]
) -> tuple[dict[str, Any], list[_native.Lease], list[str]]:
    """``lookup_many``'s answers as (fresh values, leases, busy keys)."""
    out: dict[str, Any] = {}
    leases: list[_native.Lease] = []
    busy: list[str] = []
    for k, (kind, fmt, data, lease) in zip(keys, found, strict=True):
        if kind == _native.FRESH and fmt is not None and data is not None:
            out[k] = loads((fmt, data))
        elif kind == _native.LEAD and lease is not None:
            leases.append(lease)
        else:
            busy.append(k)
    return out, leases, busy


def _loaded(leases: list[_native.Lease], values: Any) -> dict[str, Any]:
    return {lease.key: _plain(values[lease.key]) for lease in leases if lease.key in values}


def _in_order(keys: list[str], out: dict[str, Any]) -> dict[str, Any]:
    """`keys`' values in their order, without those ``load_many`` left out."""
    return {k: out[k] for k in keys if k in out and out[k] is not _LEFT_OUT}


#: A lease whose value settles alone: a ``Loaded`` or ``NoCache`` value,
#: as ``(lease, kind, data, format, adapt)``.
_Single = tuple[_native.Lease, int, bytes, int, "Adapt | None"]


def _warm_items(
    leases: list[_native.Lease], values: Any, dumps: Dumps
) -> tuple[list[tuple[_native.Lease, bytes, int]], list[_Single]]:
    """Pair leases with their loaded values: plain values to complete
    together, ``Loaded`` / ``NoCache`` ones to settle alone (their own
    options); keys the loader left out are released uncached (their
    waiters load them)."""
    items = []
    singles: list[_Single] = []
    for lease in leases:
        if lease.key not in values:
            _abandon_quietly(lease, KeyError(lease.key))
            continue
        v = values[lease.key]
        if isinstance(v, (Loaded, NoCache)):
            kind, _, data, fmt, adapt = _outcome(v, dumps)
            singles.append((lease, kind, data, fmt, adapt))
        else:
            items.append((lease, *dumps(v)))
    return items, singles


def _settle_singles(
    singles: list[_Single],
    items: list[tuple[_native.Lease, bytes, int]],
    ttl: float | None,
    grace: float,
    tags: list[str] | None,
    deps: _native.Deps | None,
) -> int:
    """Settle each ``Loaded`` / ``NoCache`` value alone; how many were
    stored (the core decides). On an error (a bad ``Loaded`` option) every
    lease not settled yet is abandoned with it, so no waiter is left
    hanging."""
    try:
        return sum(
            lease.settle(kind, data, fmt, ttl, grace, tags, deps, adapt) for lease, kind, data, fmt, adapt in singles
        )
    except BaseException as e:
        for lease in [s[0] for s in singles] + [i[0] for i in items]:
            _abandon_quietly(lease, e)
        raise


async def _asettle_singles(
    singles: list[_Single],
    items: list[tuple[_native.Lease, bytes, int]],
    ttl: float | None,
    grace: float,
    tags: list[str] | None,
    deps: _native.Deps | None,
) -> int:
    try:
        stored = 0
        for lease, kind, data, fmt, adapt in singles:
            stored += await lease.asettle(kind, data, fmt, ttl, grace, tags, deps, adapt)
        return stored
    except BaseException as e:
        for lease in [s[0] for s in singles] + [i[0] for i in items]:
            _abandon_quietly(lease, e)
        raise
