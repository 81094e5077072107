"""The plain Python API: :class:`Cache`, sync methods with asyncio twins
(the read-through ones in ``_readthrough``)."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, NoReturn, TypeVar

from . import _failopen, _native
from ._args import DEFAULT, Ttl, _check_options, _edge_purge_json, _native_ttl, _refuse_unknown
from ._disabled import caching_off, turned_off
from ._loading import Decoding, Policy, current_deps
from ._readthrough import ReadThrough
from .exceptions import RedisError
from .serializers import Serializer, Unreadable, accepted_formats, get_serializer, memo_key

__all__ = ["DEFAULT", "Cache", "Ttl"]

log = logging.getLogger("stratacache")

T = TypeVar("T")


def _unreadable(serializer: str, e: Unreadable) -> None:
    log.warning(
        "stratacache: entry in format %s is not accepted by the %s serializer; treated as a miss",
        e.args[0] if e.args else "?",
        serializer,
    )


_MISS: Final = object()
_REFUSED: Final = object()


class Cache(ReadThrough):
    """A tiered cache: in-process L1, optional Redis (or Redis Cluster) L2.

    With neither ``redis_url`` nor ``cluster`` it runs in-process only.
    Handles created with the same Redis location, namespace and settings
    in one process share one L1. All options are keyword-only::

        cache = Cache(redis_url="redis://127.0.0.1:6379", namespace="shop", ttl=300)
        user = cache.get_or_set(f"user:{uid}", lambda: db.load_user(uid), ttl=60)

    ``l1_max_bytes`` bounds L1; ``l1_memo_bytes`` of it (default a quarter,
    0 for none) keeps decoded values beside entries so hits skip unpickling
    (immutable values and plain dict/list/set trees of them; callers still
    get copies they may mutate).

    ``copy=False`` shares values instead: an L1 hit returns the same object
    every time, of any type (dataclasses and model instances included), and
    the caller must not mutate it (so not under Django's page cache or cache
    sessions, which mutate what they read). It needs a built-in serializer
    and a memo budget; values over 64 KiB of payload are still decoded per hit.
    """

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        cluster: Iterable[str] | None = None,
        namespace: str = "default",
        l1: bool = True,
        l1_max_bytes: int = 64 << 20,
        l1_memo_bytes: int | None = None,
        ttl: float | None = 300.0,
        serializer: str | Serializer = "pickle",
        compress_threshold: int = 4096,
        max_value_bytes: int = 32 << 20,
        signing_key: bytes | str | None = None,
        connect_timeout: float = 1.0,
        op_timeout: float = 0.5,
        wait_timeout: float = 30.0,
        tombstone_ttl: float = 60.0,
        ttl_jitter: float = 0.0,
        fleet_lease: bool = True,
        track_dependencies: bool = True,
        lease_ttl: float = 5.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 0.25,
        policy: Policy | None = None,
        fail_open: bool = False,
        copy: bool = True,
        edge_purge: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        **unknown: NoReturn,
    ) -> None:
        if unknown:
            _refuse_unknown(unknown, Cache.__init__, "Cache")
        if isinstance(signing_key, str):
            signing_key = signing_key.encode()
        _check_options(
            l1_max_bytes=l1_max_bytes,
            l1_memo_bytes=l1_memo_bytes,
            ttl=ttl,
            compress_threshold=compress_threshold,
            max_value_bytes=max_value_bytes,
            connect_timeout=connect_timeout,
            op_timeout=op_timeout,
            wait_timeout=wait_timeout,
            tombstone_ttl=tombstone_ttl,
            ttl_jitter=ttl_jitter,
            lease_ttl=lease_ttl,
            breaker_threshold=breaker_threshold,
            breaker_cooldown=breaker_cooldown,
        )
        self._serializer = get_serializer(serializer)
        self._sloads = self._serializer.loads
        self._sdumps = self._serializer.dumps
        self._memo = memo_key(self._serializer, copy=copy)
        # No reference back to self (a cycle would keep the handle, and the
        # L1 it shares, alive until the cyclic GC runs).
        self._decoding = Decoding(self._sloads, self._memo, functools.partial(_unreadable, self._serializer.name))
        self._n = _native.Cache(
            namespace=namespace,
            redis_url=redis_url or None,
            cluster=list(cluster) if cluster is not None else None,
            l1=l1,
            l1_max_bytes=l1_max_bytes,
            l1_memo_bytes=l1_memo_bytes,
            default_ttl=math.inf if ttl is None else float(ttl),
            compress_threshold=compress_threshold,
            max_value_bytes=max_value_bytes,
            signing_key=signing_key,
            connect_timeout=connect_timeout,
            op_timeout=op_timeout,
            tombstone_ttl=tombstone_ttl,
            wait_timeout=wait_timeout,
            ttl_jitter=ttl_jitter,
            fleet_lease=fleet_lease,
            track_dependencies=track_dependencies,
            lease_ttl=lease_ttl,
            breaker_threshold=breaker_threshold,
            breaker_cooldown=breaker_cooldown,
            accepted_formats=accepted_formats(self._serializer),
            edge_purge=_edge_purge_json(edge_purge),
        )
        #: ``get``'s hot call, bound once.
        self._get_value = self._n.get_value
        #: The same cache with caching off: ``disabled()`` blocks' calls.
        self._off = self._n.bypassing()
        self._identity = self._n.identity
        self._policy = policy if policy is not None else Policy()
        #: Redis errors in plain operations: logged (rate-limited) and
        #: answered as a miss / a failed write, instead of raised.
        self._fail_open = fail_open

    # -- helpers ---------------------------------------------------------

    @property
    def namespace(self) -> str:
        return self._n.namespace

    @property
    def serializer(self) -> Serializer:
        return self._serializer

    def _h(self) -> _native.Cache:
        """The native handle a call goes to: the one with caching off
        inside a :meth:`disabled` block that covers this cache."""
        off = caching_off.get()
        return self._off if off is not None and off.covers(self._identity) else self._n

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Caching off for this cache in the block (and the tasks and
        loader threads it starts): reads find nothing, ``get_or_set`` runs
        its loader every time and stores nothing, writes store nothing
        (``add`` answers ``True``, ``touch`` ``False``); deletes, tag
        invalidations, ``clear`` and counters work as usual, so a change
        made in the block still reaches every other cache. HTTP responses
        are passed through uncached. It covers every handle on the same
        data (Redis location and namespace; Django aliases included), and
        ``stratacache.disabled()`` turns off every cache."""
        with turned_off(frozenset((self._identity,))):
            yield

    def _load(self, v: tuple[int, bytes] | None, default: Any) -> Any:
        if v is None:
            return default
        try:
            return self._serializer.loads(v[0], v[1])
        except Unreadable as e:
            return self._unreadable(e, default)

    def _unreadable(self, e: Unreadable, default: Any) -> Any:
        _unreadable(self._serializer.name, e)
        return default

    def _loads(self, v: tuple[int, bytes]) -> Any:
        return self._load(v, None)

    def _dump(self, value: Any) -> tuple[bytes, int]:
        return self._sdumps(value)

    # -- sync API ----------------------------------------------------------

    @_failopen.inline
    def get(self, key: str, default: Any = None) -> Any:
        """The fresh value of ``key``, or ``default``. Inside a loader, the
        key and the value's tags become dependencies of what it builds."""
        try:
            if caching_off.get() is None and current_deps.get() is None:
                return self._get_value(key, self._sloads, self._memo, default)
            n = self._h()
            if (deps := current_deps.get()) is not None:
                return self._load(n.get_tracked(key, deps), default)
            return n.get_value(key, self._sloads, self._memo, default)
        except Unreadable as e:
            return self._unreadable(e, default)
        except RedisError as e:
            return _failopen.answer(self._fail_open, "get", e, default)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Fresh values of the keys found (one Redis round trip for the L1 misses)."""
        keys = list(keys)
        if (deps := current_deps.get()) is not None:
            return self._loaded_many(keys, self._h().get_many_tracked(keys, deps))
        out = {}
        values = self._h().get_many_values(keys, self._sloads, self._memo, _MISS, _REFUSED, Unreadable)
        for k, v in zip(keys, values, strict=True):
            if v is _REFUSED:
                self._unreadable(Unreadable(), None)
            elif v is not _MISS:
                out[k] = v
        return out

    @_failopen.inline
    def set(
        self, key: str, value: Any, ttl: Ttl = DEFAULT, *, grace: float = 0.0, tags: list[str] | None = None
    ) -> None:
        """Store ``value`` (write-through: Redis, then L1)."""
        try:
            self._set_seconds(key, value, _native_ttl(ttl), grace, tags)
        except RedisError as e:
            _failopen.answer(self._fail_open, "set", e, None)

    def _set_seconds(self, key: str, value: Any, ttl: float | None, grace: float, tags: list[str] | None) -> None:
        """:meth:`set` with ``ttl`` already in seconds (``None``: the
        cache's default, ``math.inf``: never expires); the Django backend
        calls it directly."""
        data, fmt = self._sdumps(value)
        # `_h()` inline: a call less on every write outside `disabled()`.
        (self._n if caching_off.get() is None else self._h()).set(key, data, fmt, ttl, grace, tags)

    def set_many(self, mapping: Mapping[str, Any], ttl: Ttl = DEFAULT, *, grace: float = 0.0) -> list[str]:
        """Store several values; returns the keys that failed (``[]`` when none)."""
        items = [(k, *self._dump(v)) for k, v in mapping.items()]
        return self._h().set_many(items, _native_ttl(ttl), grace)

    def add(self, key: str, value: Any, ttl: Ttl = DEFAULT, *, grace: float = 0.0) -> bool:
        """Store only if ``key`` has no live value; ``True`` when stored."""
        data, fmt = self._dump(value)
        return self._h().add(key, data, fmt, _native_ttl(ttl), grace)

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        return self._h().delete(key)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove several keys; returns how many existed."""
        return self._h().delete_many(list(keys))

    def touch(self, key: str, ttl: Ttl = DEFAULT) -> bool:
        """Give a live key a new TTL; ``False`` if it is missing."""
        return self._h().touch(key, _native_ttl(ttl))

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta`` (across processes with Redis).

        Raises :class:`KeyNotFoundError` for a missing key and
        :class:`NotAnIntegerError` for a non-integer value.
        """
        return self._h().incr(key, delta)

    def decr(self, key: str, delta: int = 1) -> int:
        """Atomically subtract ``delta``."""
        return self._h().incr(key, -delta)

    def has_key(self, key: str) -> bool:
        if (deps := current_deps.get()) is not None:  # inside a loader: a tracked read
            return self._h().get_tracked(key, deps) is not None
        return self._h().has_key(key)

    def __contains__(self, key: str) -> bool:
        return self.has_key(key)

    def clear(self) -> None:
        """Remove every entry of this namespace (never anything else)."""
        self._h().clear()

    def invalidate_tags(self, tags: Iterable[str]) -> None:
        """Make every entry carrying any of ``tags`` stale, in every process
        (one Redis write per tag, however many entries carry it). Stale
        entries are still served by ``allow_stale``/``fail_safe`` callers
        within their grace; everyone else gets a reload."""
        self._h().invalidate_tags(list(tags))

    def close(self) -> None:
        """Close this handle; later calls raise :class:`CacheClosedError`."""
        self._n.close()

    def stats(self) -> dict[str, int]:
        """Counters (hits, misses, leads, coalesced waits, errors, ...) and L1 size."""
        return self._n.stats()

    def metrics_text(self) -> str:
        """Prometheus text exposition of :meth:`stats`."""
        return self._n.metrics_text()

    def flush_edge_purges(self, timeout: float = 10.0) -> bool:
        """Wait until the purges queued for the edges (``edge_purge``) are
        sent or given up, at most ``timeout`` seconds: ``True`` when none
        are left. For scripts and commands that invalidate and exit; a
        server never needs it."""
        return self._n.flush_edge_purges(timeout)

    # -- asyncio twins -----------------------------------------------------

    async def aget(self, key: str, default: Any = None) -> Any:
        n = self._n if caching_off.get() is None else self._h()
        if (deps := current_deps.get()) is not None:
            tracked = await n.aget_tracked(key, deps)
            _native.note_served(0)  # unknown: stratacache.otel's span goes by the value
            return self._load(tracked, default)
        # An L1 hit is answered here, without an event-loop round trip.
        try:
            v = n.get_local_value(key, self._sloads, self._memo, _MISS)
        except Unreadable as e:
            return self._unreadable(e, default)
        if v is not _MISS:
            return v
        if not n.has_l2:
            return default
        # How it was served, for stratacache.otel's span: noted after the
        # await, so another task's read in between does not stand for it.
        got = await n.aget(key)
        _native.note_served(0)
        if got is None:
            return default
        try:
            found = self._serializer.loads(got[0], got[1])
        except Unreadable as e:
            return self._unreadable(e, default)
        _native.note_served(got[2])
        return found

    async def aget_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if (deps := current_deps.get()) is not None:
            return self._loaded_many(keys, await self._h().aget_many_tracked(keys, deps))
        return self._loaded_many(keys, await self._h().aget_many(keys))

    def _loaded_many(self, keys: list[str], values: list[tuple[int, bytes] | None]) -> dict[str, Any]:
        missing = object()
        out = {}
        for k, v in zip(keys, values, strict=True):
            val = self._load(v, missing)
            if val is not missing:
                out[k] = val
        return out

    def depends_on(self, *tags: str) -> None:
        """Inside a loader: the value it builds depends on ``tags`` too (for
        what the cache cannot see, such as a database read), at their
        current versions; invalidating any of them invalidates the value.
        Outside a loader it does nothing."""
        if (deps := current_deps.get()) is not None:
            self._h().track_tags(deps, list(tags))

    async def adepends_on(self, *tags: str) -> None:
        """Async :meth:`depends_on`."""
        if (deps := current_deps.get()) is not None:
            await self._h().atrack_tags(deps, list(tags))

    async def aset(
        self, key: str, value: Any, ttl: Ttl = DEFAULT, *, grace: float = 0.0, tags: list[str] | None = None
    ) -> None:
        data, fmt = self._dump(value)
        await self._h().aset(key, data, fmt, _native_ttl(ttl), grace, tags)

    async def aset_many(self, mapping: Mapping[str, Any], ttl: Ttl = DEFAULT, *, grace: float = 0.0) -> list[str]:
        items = [(k, *self._dump(v)) for k, v in mapping.items()]
        return await self._h().aset_many(items, _native_ttl(ttl), grace)

    async def aadd(self, key: str, value: Any, ttl: Ttl = DEFAULT, *, grace: float = 0.0) -> bool:
        data, fmt = self._dump(value)
        return await self._h().aadd(key, data, fmt, _native_ttl(ttl), grace)

    async def adelete(self, key: str) -> bool:
        return await self._h().adelete(key)

    async def adelete_many(self, keys: Iterable[str]) -> int:
        return await self._h().adelete_many(list(keys))

    async def atouch(self, key: str, ttl: Ttl = DEFAULT) -> bool:
        return await self._h().atouch(key, _native_ttl(ttl))

    async def aincr(self, key: str, delta: int = 1) -> int:
        return await self._h().aincr(key, delta)

    async def adecr(self, key: str, delta: int = 1) -> int:
        return await self._h().aincr(key, -delta)

    async def ahas_key(self, key: str) -> bool:
        if (deps := current_deps.get()) is not None:
            return await self._h().aget_tracked(key, deps) is not None
        return await self._h().ahas_key(key)

    async def aclear(self) -> None:
        await self._h().aclear()

    async def ainvalidate_tags(self, tags: Iterable[str]) -> None:
        await self._h().ainvalidate_tags(list(tags))

    def __repr__(self) -> str:
        return f"<stratacache.Cache namespace={self.namespace!r}>"


_failopen.install(Cache)
