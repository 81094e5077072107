"""``StrataCache``: Django's cache API on :class:`stratacache.Cache`.

The backend translates Django's conventions (keys made with
``KEY_PREFIX``/``VERSION``/``KEY_FUNCTION``, ``timeout`` semantics,
``incr`` raising ``ValueError``, ``delete_many`` answering nothing) and
leaves every behaviour to the one Python façade, ``Cache``: serializing,
fail-open (``IGNORE_EXCEPTIONS``), read-through and warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, cast

from django.core.cache.backends.base import DEFAULT_TIMEOUT, MEMCACHE_MAX_KEY_LENGTH, BaseCache, default_key_func
from django.core.exceptions import ImproperlyConfigured

from .. import _failopen, _native
from .._disabled import caching_off
from .._loading import current_deps
from ..client import Cache
from ..exceptions import KeyNotFoundError, NotAnIntegerError, RedisError, StrataCacheError
from ..serializers import Unreadable
from .models import uncommitted
from .options import cache_kwargs, options

__all__ = ["StrataCache"]

_MISSING = object()


class _Unusable:
    """Stands in for the cache of a misconfigured alias: fails on use."""

    def __init__(self, err: ImproperlyConfigured) -> None:
        self._err = err

    def __getattr__(self, name: str) -> Any:
        raise self._err

    def fail(self, *args: Any) -> Any:
        raise self._err


class StrataCache(BaseCache):
    """A Django cache backend on stratacache (L1 in-process, L2 Redis)."""

    _pfx: str | None = None
    _fast_keys = False
    _MADE_MAX = 4096

    def __init__(self, server: str | list[str] | tuple[str, ...], params: dict[str, Any]) -> None:
        super().__init__(params)
        cls = type(self)
        self._fast_keys = (
            cls.make_key is BaseCache.make_key
            and cls.validate_key is BaseCache.validate_key
            and cls.make_and_validate_key is BaseCache.make_and_validate_key
        )
        self._reprefix()
        try:
            kwargs = cache_kwargs(server, options(params), str(params.get("KEY_PREFIX", "") or ""))
            cache = Cache(**kwargs)
        except (StrataCacheError, ImproperlyConfigured, ValueError, TypeError) as e:
            err = ImproperlyConfigured(f"stratacache: invalid cache configuration: {e}")
            from django.apps import apps

            if not (apps.ready and apps.is_installed("stratacache")):
                raise err from e
            # The stratacache app's system check reports this cleanly (Django's
            # own cache checks instantiate every alias first); fail on use.
            unusable = _Unusable(err)
            self._c = cast(Cache, unusable)
            self._n = cast(_native.Cache, unusable)
            self._grace = 0.0
            self._fail_open = True
            self._get_value: Callable[..., Any] = unusable.fail
            self._sloads: Any = unusable.fail
            self._memo = 0
            return
        self._c = cache
        self._grace = self._c._policy.grace
        self._fail_open = self._c._fail_open
        #: The native handle: Django's hottest call, ``get``, goes straight
        #: to it (the façade's ``get`` with one frame less).
        self._n = cache._n
        self._get_value = self._n.get_value
        self._sloads = self._c._sloads
        self._memo = self._c._memo

    # -- keys ------------------------------------------------------------------
    # With Django's default key function a str key at the default version is
    # "prefix:version:" + key: that prefix is kept ready (and rebuilt when
    # any of the three attributes is assigned).

    @property
    def default_timeout(self) -> float | None:
        return self._default_timeout

    @default_timeout.setter
    def default_timeout(self, value: float | None) -> None:
        # Django assigns it in __init__; the seconds `set` passes are kept
        # ready beside it (`_ttl`).
        self._default_timeout = value
        self._default_ttl = math.inf if value is None else float(value)

    @property
    def key_prefix(self) -> str:
        return self._key_prefix

    @key_prefix.setter
    def key_prefix(self, value: str) -> None:
        self._key_prefix = value
        self._reprefix()

    @property
    def version(self) -> int:
        return self._version

    @version.setter
    def version(self, value: int) -> None:
        self._version = value
        self._reprefix()

    @property
    def key_func(self) -> Callable[..., str]:
        return self._key_func

    @key_func.setter
    def key_func(self, value: Callable[..., str]) -> None:
        self._key_func = value
        self._reprefix()

    def _reprefix(self) -> None:
        d = self.__dict__
        fast = self._fast_keys and d.get("_key_func") is default_key_func and "_version" in d
        # str keys at the default version -> full keys, for keys that passed
        # validation without a warning (bounded: cleared when full).
        self._made: dict[str, str] = {}
        # str() of each, as default_key_func's "%s" formatting does.
        self._pfx = ":".join((str(d.get("_key_prefix", "")), str(d.get("_version")), "")) if fast else None

    def _key(self, key: Any, version: int | None) -> str:
        pfx = self._pfx
        if pfx is not None and version is None and type(key) is str:
            k = pfx + key
            if len(k) > MEMCACHE_MAX_KEY_LENGTH or " " in k or not k.isprintable():
                self.validate_key(k)
            else:
                if len(self._made) >= self._MADE_MAX:
                    self._made.clear()
                self._made[key] = k
            return k
        if not self._fast_keys:
            return str(self.make_and_validate_key(key, version=version))
        # Same result as make_and_validate_key, without the per-call
        # generator: the warnings path runs only for suspicious keys.
        k = self.key_func(key, self.key_prefix, self.version if version is None else version)
        # isprintable() is False for every character Django warns about
        # (\x00-\x1f, \x7f) except the space; Django's lazily compiled
        # regex costs more than the whole L1 hit.
        if len(k) > MEMCACHE_MAX_KEY_LENGTH or " " in k or not k.isprintable():
            self.validate_key(k)
        return str(k)

    def _ttl(self, timeout: Any) -> float:
        """Django's timeout: ``None`` never expires, ``<= 0`` is not cached."""
        if timeout is DEFAULT_TIMEOUT:
            return self._default_ttl
        if timeout is None:
            return math.inf
        return float(timeout)

    # -- the Django cache API -----------------------------------------------------

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl <= 0:
            # Django: "added" and immediately expired when the key was absent
            # (and not added when Redis cannot tell).
            try:
                return not self._c._h().has_key(k)
            except RedisError as e:
                return bool(_failopen.answer(self._fail_open, "add", e, False))
        return self._c.add(k, value, ttl, grace=self._grace)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        # The hottest call: a key made before is looked up, not made again.
        if version is not None or type(key) is not str or (k := self._made.get(key)) is None:
            k = self._key(key, version)
        try:
            if current_deps.get() is not None or caching_off.get() is not None:
                return self._c.get(k, default)  # a tracked read, or caching off
            return self._get_value(k, self._sloads, self._memo, default)
        except Unreadable:
            return default
        except RedisError as e:
            return _failopen.answer(self._fail_open, "get", e, default)

    def set(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        # A key made before is looked up, not made again (as in get).
        if version is not None or type(key) is not str or (k := self._made.get(key)) is None:
            k = self._key(key, version)
        try:  # fail-open as the façade answers it (_failopen.answer), without set's frame
            ttl = self._default_ttl if timeout is DEFAULT_TIMEOUT else self._ttl(timeout)
            self._c._set_seconds(k, value, ttl, self._grace, None if tags is None else list(tags))
        except RedisError as e:
            _failopen.answer(self._fail_open, "set", e, None)

    def invalidate_tags(self, tags: Iterable[str]) -> None:
        """Make every entry carrying any of ``tags`` stale, in every process
        (one Redis write per tag, however many entries carry it)."""
        self._c.invalidate_tags(tags)

    async def ainvalidate_tags(self, tags: Iterable[str]) -> None:
        await self._c.ainvalidate_tags(tags)

    def depends_on(self, *tags: str) -> None:
        """Inside a loader (``get_or_set``): what it builds depends on
        ``tags`` too (see :meth:`stratacache.Cache.depends_on`)."""
        self._c.depends_on(*tags)

    async def adepends_on(self, *tags: str) -> None:
        await self._c.adepends_on(*tags)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._c.touch(self._key(key, version), self._ttl(timeout))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._c.delete(self._key(key, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        if version is None:
            # Keys made before are looked up, not made again (as in get).
            made, key = self._made.get, self._key
            by_made = {(type(k) is str and made(k)) or key(k, None): k for k in keys}
        else:
            by_made = {self._key(k, version): k for k in keys}
        return {by_made[mk]: v for mk, v in self._c.get_many(by_made).items()}

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        by_made = {self._key(k, version): k for k in data}
        made = {mk: data[orig] for mk, orig in by_made.items()}
        return [by_made[f] for f in self._c.set_many(made, self._ttl(timeout), grace=self._grace)]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self._c.delete_many([self._key(k, version) for k in keys])

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._c.has_key(self._key(key, version))

    def _incr_failed(self, key: Any, e: RedisError) -> ValueError:
        """Fail-open ``incr``: as on a missing key (what ``try: incr except
        ValueError:`` code handles), unless IGNORE_EXCEPTIONS is off."""
        _failopen.answer(self._fail_open, "incr", e, None)
        return ValueError(f"Key '{key}' not found (Redis unavailable)")

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        try:
            return self._c.incr(self._key(key, version), delta)
        except KeyNotFoundError:
            raise ValueError(f"Key '{key}' not found") from None
        except RedisError as e:
            raise self._incr_failed(key, e) from e
        except NotAnIntegerError:
            # Not a 64-bit integer (a float, a big int, ...): Django's
            # read-modify-write, which is what every other backend does.
            value = self.get(key, _MISSING, version=version)
            if value is _MISSING:
                raise ValueError(f"Key '{key}' not found") from None
            new_value = value + delta
            self.set(key, new_value, version=version)
            return new_value

    def clear(self) -> None:
        self._c.clear()

    def close(self, **kwargs: Any) -> None:
        """No-op (see the module docs)."""

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        allow_stale: bool | None = None,
        fail_safe: bool | None = None,
        hard_timeout: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """Stampede-safe ``get_or_set``: one ``default()`` call per key per
        process and, with Redis, per fleet (see the OPTIONS for the policy).
        ``tags``: the value carries them (see :meth:`invalidate_tags`). If
        this thread's open transaction changed rows of tracked models with
        any of them, the cache is left out: ``default`` is loaded for this
        caller alone (it sees the transaction's own writes; nobody else may)
        and not stored (``stratacache.django.models``)."""
        if tags is not None:
            tags = list(tags)
            if uncommitted(tags):
                return default() if callable(default) else default
        return self._c.get_or_set(
            self._key(key, version),
            default,
            self._ttl(timeout),
            allow_stale=allow_stale,
            fail_safe=fail_safe,
            hard_timeout=hard_timeout,
            tags=tags,
        )

    def warm(
        self,
        keys: Iterable[Any],
        load_many: Callable[[list[Any]], Mapping[Any, Any]],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        force: bool = False,
    ) -> int:
        """Load ``keys`` ahead of traffic with one ``load_many(keys)`` call
        returning ``{key: value}`` for the keys that need it (fresh keys and
        keys being loaded anywhere in the fleet are skipped). Returns how
        many were stored."""
        by_made = {self._key(k, version): k for k in keys}
        return self._c.warm(
            by_made, ttl=self._ttl(timeout), load_many=_by_made(by_made, load_many), grace=self._grace, force=force
        )

    # -- async: native coroutines on the core (not sync_to_async) ------------------

    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl <= 0:
            try:
                return not await self._c._h().ahas_key(k)
            except RedisError as e:
                return bool(_failopen.answer(self._fail_open, "aadd", e, False))
        return await self._c.aadd(k, value, ttl, grace=self._grace)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await self._c.aget(self._key(key, version), default)

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        tag_list = list(tags) if tags is not None else None
        await self._c.aset(self._key(key, version), value, self._ttl(timeout), grace=self._grace, tags=tag_list)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return await self._c.atouch(self._key(key, version), self._ttl(timeout))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await self._c.adelete(self._key(key, version))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        by_made = {self._key(k, version): k for k in keys}
        return {by_made[mk]: v for mk, v in (await self._c.aget_many(by_made)).items()}

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        by_made = {self._key(k, version): k for k in data}
        made = {mk: data[orig] for mk, orig in by_made.items()}
        return [by_made[f] for f in await self._c.aset_many(made, self._ttl(timeout), grace=self._grace)]

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await self._c.adelete_many([self._key(k, version) for k in keys])

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await self._c.ahas_key(self._key(key, version))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        try:
            return await self._c.aincr(self._key(key, version), delta)
        except KeyNotFoundError:
            raise ValueError(f"Key '{key}' not found") from None
        except RedisError as e:
            raise self._incr_failed(key, e) from e
        except NotAnIntegerError:
            value = await self.aget(key, _MISSING, version=version)
            if value is _MISSING:
                raise ValueError(f"Key '{key}' not found") from None
            new_value = value + delta
            await self.aset(key, new_value, version=version)
            return new_value

    async def aclear(self) -> None:
        await self._c.aclear()

    async def aclose(self, **kwargs: Any) -> None:
        """No-op (see the module docs)."""

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        allow_stale: bool | None = None,
        fail_safe: bool | None = None,
        hard_timeout: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """Async stampede-safe ``get_or_set``; ``default`` may be an async
        callable. (Django runs transactions in sync code only: the rule of
        :meth:`get_or_set` for uncommitted rows has nothing to see here.)"""
        return await self._c.aget_or_set(
            self._key(key, version),
            default,
            self._ttl(timeout),
            allow_stale=allow_stale,
            fail_safe=fail_safe,
            hard_timeout=hard_timeout,
            tags=tags,
        )

    async def awarm(
        self,
        keys: Iterable[Any],
        load_many: Callable[[list[Any]], Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        force: bool = False,
    ) -> int:
        """Async :meth:`warm`; ``load_many`` may be async."""
        by_made = {self._key(k, version): k for k in keys}
        return await self._c.awarm(
            by_made, ttl=self._ttl(timeout), load_many=_by_made(by_made, load_many), grace=self._grace, force=force
        )

    def disabled(self) -> AbstractContextManager[None]:
        """Caching off for this alias in the block: see
        :meth:`stratacache.Cache.disabled`."""
        return self._c.disabled()

    # -- observability --------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """stratacache counters (hits, misses, leads, coalesced waits, errors, ...)."""
        return self._c.stats()

    def metrics_text(self) -> str:
        """Prometheus text exposition of :meth:`stats`."""
        return self._c.metrics_text()

    def flush_edge_purges(self, timeout: float = 10.0) -> bool:
        """Wait until the queued edge purges (``EDGE_PURGE``) are sent or
        given up, at most ``timeout`` seconds: ``True`` when none are left."""
        return self._c.flush_edge_purges(timeout)


def _by_made(by_made: dict[str, Any], load_many: Callable[[list[Any]], Any]) -> Callable[[list[str]], Any]:
    """``load_many`` over the caller's keys, as the façade's over made keys
    (sync or async, as ``load_many`` is)."""

    def pick(made: list[str], loaded: Mapping[Any, Any]) -> dict[str, Any]:
        return {mk: loaded[by_made[mk]] for mk in made if by_made[mk] in loaded}

    def load(made: list[str]) -> Any:
        got = load_many([by_made[mk] for mk in made])
        if hasattr(got, "__await__"):

            async def later() -> dict[str, Any]:
                return pick(made, await got)

            return later()
        return pick(made, got)

    return load
