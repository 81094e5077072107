"""Django cache backend.

.. code-block:: python

    CACHES = {
        "default": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": "redis://127.0.0.1:6379/0",  # "" -> in-process only
            "TIMEOUT": 300,
            "KEY_PREFIX": "shop",
            "OPTIONS": {"L1_MAX_BYTES": 64 << 20},
        }
    }

OPTIONS (all optional, upper-case):

``NAMESPACE``            stratacache namespace; default ``"django"``, or
                         ``"django.<KEY_PREFIX>"`` when KEY_PREFIX is set (a
                         digest of it if it is not ``[A-Za-z0-9_.-]``).
                         ``clear()`` removes exactly this namespace's keys
                         (every VERSION): two sites on one Redis database
                         with different KEY_PREFIX never clear each other.
``CLUSTER``              ``True``: LOCATION is a list (or comma-separated string)
                         of Redis Cluster seed URLs.
``L1``                   ``False`` disables the in-process tier.
``L1_MAX_BYTES``         L1 capacity in bytes (default 64 MiB).
``L1_MEMO_BYTES``        the part of it that keeps decoded values for fast hits
                         (default a quarter; 0 turns it off).
``SERIALIZER``           ``"pickle"`` (default), ``"json"``, ``"msgpack"``, ``"raw"``.
``COMPRESS_THRESHOLD``   zstd-compress payloads of at least this many bytes (4096).
``MAX_VALUE_BYTES``      largest value accepted (32 MiB).
``SIGN``                 sign entries with HMAC-SHA256 (default ``True``); the key
                         is derived from ``SECRET_KEY`` (salted) unless
                         ``SIGNING_KEY`` is given. A signing reader never
                         unpickles an unsigned or forged entry.
``SIGNING_KEY``          explicit signing key (str or bytes).
``CONNECT_TIMEOUT``      seconds (1.0).  ``SOCKET_TIMEOUT`` / ``OP_TIMEOUT``: per
                         command, seconds (0.5).
``WAIT_TIMEOUT``         how long ``get_or_set`` waits for another caller's load (30).
``IGNORE_EXCEPTIONS``    fail-open (default ``True``, as django-redis users expect):
                         Redis errors are logged (one line per kind per 10 s,
                         with the count suppressed) and behave as misses /
                         failed writes; ``incr``/``decr`` raise ``ValueError``
                         as on a missing key. ``False`` raises them.

Unknown OPTIONS keys raise ``ImproperlyConfigured`` naming the key and the
nearest valid one (django-redis keys such as ``PASSWORD`` say where the
setting goes instead).
``GRACE``                seconds a value stays servable as stale after its TIMEOUT
                         (used by ``get_or_set(..., allow_stale=True)``); default 0.
``EARLY_REFRESH``        XFetch beta (e.g. 1.0) for ``get_or_set``: hot keys are
                         reloaded in the background shortly before they expire.
``REFRESH_AHEAD``        fraction of the TTL (e.g. 0.2): ``get_or_set`` refreshes
                         in the background once a value enters its last 20 %.
``TTL_JITTER``           shorten every TTL by a random fraction up to this (0-1),
                         so keys written together do not expire together.
``STALE_WHILE_REVALIDATE`` ``True``: ``get_or_set`` returns a stale value (within
                         ``GRACE``) at once and refreshes it in the background
                         (once per fleet). Per call: ``allow_stale=``.
``FAIL_SAFE``            ``True``: when the loader raises or exceeds
                         ``SOFT_TIMEOUT`` and a stale value (within ``GRACE``)
                         exists, serve it; after a failure it stays fresh for
                         ``FAIL_SAFE_THROTTLE`` seconds (30).
``SOFT_TIMEOUT``         seconds (fail-safe); ``HARD_TIMEOUT``: no caller of
                         ``get_or_set`` waits longer (stale value or
                         ``LoaderTimeoutError``; the load goes on).
``ON_WAIT_TIMEOUT``      after ``WAIT_TIMEOUT``: ``"load"`` (default) or ``"fail"``.
``NONE_TTL``             TTL for a ``None`` loaded by ``get_or_set`` (0: never
                         cached); default: like any value.
``FLEET_LEASE``          ``False`` turns off the fleet-wide lease (one loader
                         per key across every process sharing Redis; default on).
``LEASE_TTL``            seconds a crashed loader's lease blocks others (5).
``BREAKER_THRESHOLD``    consecutive Redis failures that open the circuit breaker (5);
                         ``BREAKER_COOLDOWN``: seconds it skips Redis before probing (0.25).

``close()`` is a no-op: Django calls it after every request, and the
connections here are long-lived multiplexed ones shared by every thread.

System checks: add ``"stratacache"`` to ``INSTALLED_APPS`` and ``manage.py
check`` reports a malformed entry (``stratacache.E001``, with the reason)
and two aliases sharing one namespace (``stratacache.W001``) without
touching Redis. Without the app, a malformed entry raises
``ImproperlyConfigured`` when the alias is first used.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, Callable, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT, MEMCACHE_MAX_KEY_LENGTH, BaseCache, default_key_func
from django.core.exceptions import ImproperlyConfigured

from . import _native
from ._django_options import _native_kwargs, _options, _policy, _typed, check_caches
from ._loading import Decoding, Policy, aread_through, awarm, read_through, warm
from ._logging import warn_l2
from .exceptions import KeyNotFoundError, NotAnIntegerError, RedisError, StrataCacheError
from .serializers import Unreadable, accepted_formats, get_serializer, memo_key

__all__ = ["StrataCache", "check_caches"]

log = logging.getLogger("stratacache.django")

F = TypeVar("F", bound=Callable[..., Any])

_MISSING = object()


def _fail_open(default: Any) -> Callable[[F], F]:
    """Turn Redis errors into ``default`` (logged) when IGNORE_EXCEPTIONS is on."""

    def deco(fn: F) -> F:
        if _is_coroutine_function(fn):

            @functools.wraps(fn)
            async def awrapper(self: StrataCache, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(self, *args, **kwargs)
                except RedisError as e:
                    return self._swallow(e, fn.__name__, default)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(self: StrataCache, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except RedisError as e:
                return self._swallow(e, fn.__name__, default)

        return wrapper  # type: ignore[return-value]

    return deco


def _is_coroutine_function(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


class _Unusable:
    """Stands in for the native cache of a misconfigured alias."""

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
        self._ignore_exceptions = True
        try:
            opts = _options(params)
            self._ignore_exceptions = _typed(opts, "IGNORE_EXCEPTIONS", bool, True)
            self._policy = _policy(opts)
            self._serializer = get_serializer(opts.get("SERIALIZER", "pickle"))
            self._sloads = self._serializer.loads
            self._memo = memo_key(self._serializer)
            self._decoding = Decoding(self._sloads, self._memo, lambda e: None)
            kwargs = _native_kwargs(server, opts, str(params.get("KEY_PREFIX", "") or ""))
            self._n = _native.Cache(**kwargs, accepted_formats=accepted_formats(self._serializer))
            self._get_value: Callable[..., Any] = self._n.get_value
        except (StrataCacheError, ImproperlyConfigured, ValueError, TypeError) as e:
            err = ImproperlyConfigured(f"stratacache: invalid cache configuration: {e}")
            self._policy = Policy()
            from django.apps import apps

            if not (apps.ready and apps.is_installed("stratacache")):
                raise err from e
            # The stratacache app's system check reports this cleanly (Django's
            # own cache checks instantiate every alias first); fail on use.
            unusable = _Unusable(err)
            self._n = unusable  # type: ignore[assignment]
            self._serializer = unusable
            self._sloads = unusable.fail  # type: ignore[assignment]
            self._memo = 0
            self._get_value = unusable.fail
            self._decoding = Decoding(unusable.fail, 0, lambda e: None)

    # -- keys ------------------------------------------------------------------
    # With Django's default key function a str key at the default version is
    # "prefix:version:" + key: that prefix is kept ready (and rebuilt when
    # any of the three attributes is assigned).

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

    # -- internals -------------------------------------------------------------

    def _swallow(self, e: Exception, op: str, default: Any) -> Any:
        if not self._ignore_exceptions:
            raise e
        warn_l2(op, f"{op} failed, treated as a miss (IGNORE_EXCEPTIONS)", e)
        return default

    def _ttl(self, timeout: Any) -> float:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return math.inf
        return float(timeout)

    def _loads(self, v: tuple[int, bytes]) -> Any:
        return self._load(v, None)

    def _load(self, v: tuple[int, bytes] | None, default: Any) -> Any:
        if v is None:
            return default
        try:
            return self._serializer.loads(v[0], v[1])
        except Unreadable:
            return default

    # -- the Django cache API -----------------------------------------------------

    @_fail_open(False)
    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl <= 0:
            # Django: "added" and immediately expired when the key was absent.
            return not self._n.has_key(k)
        data, fmt = self._serializer.dumps(value)
        return self._n.add(k, data, fmt, ttl, self._policy.grace)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        # The hottest call: a key made before is looked up, not made again.
        if version is not None or type(key) is not str or (k := self._made.get(key)) is None:
            k = self._key(key, version)
        try:
            return self._get_value(k, self._sloads, self._memo, default)
        except Unreadable:
            return default
        except RedisError as e:
            return self._swallow(e, "get", default)

    @_fail_open(None)
    def set(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        data, fmt = self._serializer.dumps(value)
        tag_list = list(tags) if tags is not None else None
        self._n.set(self._key(key, version), data, fmt, self._ttl(timeout), self._policy.grace, tag_list)

    @_fail_open(None)
    def invalidate_tags(self, tags: Iterable[str]) -> None:
        """Make every entry carrying any of ``tags`` stale, in every process
        (one Redis write per tag, however many entries carry it)."""
        self._n.invalidate_tags(list(tags))

    @_fail_open(None)
    async def ainvalidate_tags(self, tags: Iterable[str]) -> None:
        await self._n.ainvalidate_tags(list(tags))

    @_fail_open(False)
    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._n.touch(self._key(key, version), self._ttl(timeout))

    @_fail_open(False)
    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._n.delete(self._key(key, version))

    @_fail_open({})
    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        keys = list(keys)
        made = [self._key(k, version) for k in keys]
        values = self._n.get_many_values(made, self._sloads, self._memo, _MISSING, _MISSING, Unreadable)
        return {orig: v for orig, v in zip(keys, values) if v is not _MISSING}

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        by_made = {self._key(k, version): k for k in data}
        items = [(mk, *self._serializer.dumps(data[orig])) for mk, orig in by_made.items()]
        try:
            failed = self._n.set_many(items, self._ttl(timeout), self._policy.grace)
        except RedisError as e:
            return self._swallow(e, "set_many", list(data))  # type: ignore[no-any-return]
        return [by_made[f] for f in failed]

    @_fail_open(None)
    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self._n.delete_many([self._key(k, version) for k in keys])

    @_fail_open(False)
    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._n.has_key(self._key(key, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        k = self._key(key, version)
        try:
            return self._n.incr(k, delta)
        except KeyNotFoundError:
            raise ValueError(f"Key '{key}' not found") from None
        except RedisError as e:
            # Fail open as on a missing key (what `try: incr except
            # ValueError:` code handles), unless IGNORE_EXCEPTIONS is off.
            self._swallow(e, "incr", None)
            raise ValueError(f"Key '{key}' not found (Redis unavailable)") from e
        except NotAnIntegerError:
            # Not a 64-bit integer (a float, a big int, ...): Django's
            # read-modify-write, which is what every other backend does.
            value = self.get(key, _MISSING, version=version)
            if value is _MISSING:
                raise ValueError(f"Key '{key}' not found") from None
            new_value = value + delta
            self.set(key, new_value, version=version)
            return new_value

    @_fail_open(None)
    def clear(self) -> None:
        self._n.clear()

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
        ``tags``: the value carries them (see :meth:`invalidate_tags`)."""
        k = self._key(key, version)
        policy = self._policy.updated(
            allow_stale=allow_stale,
            fail_safe=fail_safe,
            hard_timeout=hard_timeout,
            tags=tuple(tags) if tags is not None else None,
        )
        try:
            return read_through(
                self._n, k, default, self._serializer.dumps, self._loads, self._ttl(timeout), policy, self._decoding
            )
        except RedisError as e:
            self._swallow(e, "get_or_set", None)
            return default() if callable(default) else default

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
        by_full = {self._key(k, version): k for k in keys}

        def load(full_keys: list[str]) -> dict[str, Any]:
            loaded = load_many([by_full[fk] for fk in full_keys])
            return {fk: loaded[by_full[fk]] for fk in full_keys if by_full[fk] in loaded}

        return warm(self._n, list(by_full), load, self._serializer.dumps, self._ttl(timeout), self._policy.grace, force)

    # -- async: native coroutines on the core (not sync_to_async) ------------------

    @_fail_open(False)
    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl <= 0:
            return not await self._n.ahas_key(k)
        data, fmt = self._serializer.dumps(value)
        return await self._n.aadd(k, data, fmt, ttl, self._policy.grace)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        k = self._key(key, version)
        try:
            # An L1 hit needs no event-loop round trip.
            hit = self._n.get_local_value(k, self._sloads, self._memo, _MISSING)
            if hit is not _MISSING:
                return hit
            if not self._n.has_l2:
                return default
            return self._load(await self._n.aget(k), default)
        except Unreadable:
            return default
        except RedisError as e:
            return self._swallow(e, "aget", default)

    @_fail_open(None)
    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        data, fmt = self._serializer.dumps(value)
        tag_list = list(tags) if tags is not None else None
        await self._n.aset(self._key(key, version), data, fmt, self._ttl(timeout), self._policy.grace, tag_list)

    @_fail_open(False)
    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return await self._n.atouch(self._key(key, version), self._ttl(timeout))

    @_fail_open(False)
    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await self._n.adelete(self._key(key, version))

    @_fail_open({})
    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        keys = list(keys)
        made = [self._key(k, version) for k in keys]
        out = {}
        for orig, v in zip(keys, await self._n.aget_many(made)):
            val = self._load(v, _MISSING)
            if val is not _MISSING:
                out[orig] = val
        return out

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        by_made = {self._key(k, version): k for k in data}
        items = [(mk, *self._serializer.dumps(data[orig])) for mk, orig in by_made.items()]
        try:
            failed = await self._n.aset_many(items, self._ttl(timeout), self._policy.grace)
        except RedisError as e:
            return self._swallow(e, "aset_many", list(data))  # type: ignore[no-any-return]
        return [by_made[f] for f in failed]

    @_fail_open(None)
    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await self._n.adelete_many([self._key(k, version) for k in keys])

    @_fail_open(False)
    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await self._n.ahas_key(self._key(key, version))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        k = self._key(key, version)
        try:
            return await self._n.aincr(k, delta)
        except KeyNotFoundError:
            raise ValueError(f"Key '{key}' not found") from None
        except RedisError as e:
            self._swallow(e, "incr", None)
            raise ValueError(f"Key '{key}' not found (Redis unavailable)") from e
        except NotAnIntegerError:
            value = await self.aget(key, _MISSING, version=version)
            if value is _MISSING:
                raise ValueError(f"Key '{key}' not found") from None
            new_value = value + delta
            await self.aset(key, new_value, version=version)
            return new_value

    @_fail_open(None)
    async def aclear(self) -> None:
        await self._n.aclear()

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
        """Async stampede-safe ``get_or_set``; ``default`` may be an async callable."""
        import inspect

        k = self._key(key, version)
        policy = self._policy.updated(
            allow_stale=allow_stale,
            fail_safe=fail_safe,
            hard_timeout=hard_timeout,
            tags=tuple(tags) if tags is not None else None,
        )
        try:
            return await aread_through(
                self._n, k, default, self._serializer.dumps, self._loads, self._ttl(timeout), policy, self._decoding
            )
        except RedisError as e:
            self._swallow(e, "aget_or_set", None)
            value = default() if callable(default) else default
            return await value if inspect.isawaitable(value) else value

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
        import inspect

        by_full = {self._key(k, version): k for k in keys}

        async def load(full_keys: list[str]) -> dict[str, Any]:
            loaded = load_many([by_full[fk] for fk in full_keys])
            if inspect.isawaitable(loaded):
                loaded = await loaded
            return {fk: loaded[by_full[fk]] for fk in full_keys if by_full[fk] in loaded}

        return await awarm(
            self._n, list(by_full), load, self._serializer.dumps, self._ttl(timeout), self._policy.grace, force
        )

    # -- observability --------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """stratacache counters (hits, misses, leads, coalesced waits, errors, ...)."""
        return self._n.stats()

    def metrics_text(self) -> str:
        """Prometheus text exposition of :meth:`stats`."""
        return self._n.metrics_text()
