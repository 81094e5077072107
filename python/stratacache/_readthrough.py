"""The read-through half of :class:`stratacache.Cache`: ``get_or_set`` and
``warm`` with their asyncio twins (a base class of ``Cache``; the loader
protocol itself is in ``_loading``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

from . import _native
from ._args import DEFAULT, Ttl, _load_many, _native_ttl
from ._loading import (
    Decoding,
    Loaded,
    NoCache,
    Policy,
    aread_through,
    read_through,
)
from ._many import _LEFT_OUT, aload_many_through, awarm, load_many_through, warm

T = TypeVar("T")


class ReadThrough:
    """Read-through operations over the state a :class:`Cache` sets up."""

    _n: _native.Cache
    _policy: Policy
    _decoding: Decoding
    _fail_open: bool

    def _dump(self, value: Any) -> tuple[bytes, int]:
        raise NotImplementedError

    def _h(self) -> _native.Cache:
        raise NotImplementedError

    def _loads(self, v: tuple[int, bytes]) -> Any:
        raise NotImplementedError

    @overload
    def get_or_set(
        self,
        key: str,
        loader: Callable[[], NoCache[T] | Loaded[T]],
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    @overload
    def get_or_set(
        self,
        key: str,
        loader: Callable[[], T | NoCache[T] | Loaded[T]],
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    @overload
    def get_or_set(
        self,
        key: str,
        loader: T,
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    def get_or_set(
        self,
        key: str,
        loader: Any,
        ttl: Ttl = DEFAULT,
        *,
        grace: float | None = None,
        allow_stale: bool | None = None,
        wait_timeout: float | None = None,
        early_refresh: float | None = None,
        refresh_ahead: float | None = None,
        fail_safe: bool | None = None,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        none_ttl: float | None = None,
        tags: Iterable[str] | None = None,
        policy: Policy | None = None,
    ) -> Any:
        """The value of ``key``, loading it with ``loader()`` if absent.

        Stampede-safe: concurrent callers for one key make exactly one
        ``loader`` call in this process and, with Redis, in the whole fleet
        (a lease in Redis; the others wait for its fill, woken by pub/sub).
        The options override the cache's :class:`Policy` for this call (see
        :class:`Policy` for what each does): ``allow_stale`` + ``grace``
        (stale-while-revalidate), ``early_refresh`` / ``refresh_ahead``,
        ``fail_safe`` / ``soft_timeout`` / ``hard_timeout``, ``none_ttl``.
        A loader may return :class:`NoCache` to hand a value out uncached.
        """
        p = (policy or self._policy).updated(
            grace=grace,
            allow_stale=allow_stale,
            wait_timeout=wait_timeout,
            early_refresh=early_refresh,
            refresh_ahead=refresh_ahead,
            fail_safe=fail_safe,
            soft_timeout=soft_timeout,
            hard_timeout=hard_timeout,
            none_ttl=none_ttl,
            tags=tuple(tags) if tags is not None else None,
        )
        return read_through(
            self._h(), key, loader, self._dump, self._loads, _native_ttl(ttl), p, self._decoding, self._fail_open
        )

    def get_or_set_many(
        self,
        keys: Iterable[str],
        load_many: Callable[[list[str]], Mapping[str, Any]],
        ttl: Ttl = DEFAULT,
        *,
        tags: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """The values of ``keys``: the fresh ones from the cache, the rest
        loaded by one ``load_many(missing) -> {key: value}`` call through
        the same fleet leases as ``get_or_set`` (a key another process is
        loading right now is waited for, not loaded twice), stored with
        ``ttl`` and ``tags``. Keys ``load_many`` leaves out are not
        cached and not in the result."""
        wanted = list(dict.fromkeys(keys))
        tag_list = list(tags) if tags is not None else None

        def one(k: str) -> Any:
            def load() -> Any:
                got = load_many([k])
                return got[k] if k in got else NoCache(_LEFT_OUT)

            return self.get_or_set(k, load, ttl, tags=tag_list)

        return load_many_through(self._h(), wanted, load_many, self._dump, self._loads, _native_ttl(ttl), tag_list, one)

    async def aget_or_set_many(
        self,
        keys: Iterable[str],
        load_many: Callable[[list[str]], Mapping[str, Any] | Awaitable[Mapping[str, Any]]],
        ttl: Ttl = DEFAULT,
        *,
        tags: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """:meth:`get_or_set_many` for asyncio; ``load_many`` may be a
        coroutine function."""
        wanted = list(dict.fromkeys(keys))
        tag_list = list(tags) if tags is not None else None

        async def one(k: str) -> Any:
            async def load() -> Any:
                got = load_many([k])
                if isinstance(got, Awaitable):
                    got = await got
                return got[k] if k in got else NoCache(_LEFT_OUT)

            return await self.aget_or_set(k, load, ttl, tags=tag_list)

        return await aload_many_through(
            self._h(), wanted, load_many, self._dump, self._loads, _native_ttl(ttl), tag_list, one
        )

    def warm(
        self,
        keys: Iterable[str],
        loader: Callable[[str], Any] | None = None,
        ttl: Ttl = DEFAULT,
        *,
        load_many: Callable[[list[str]], Mapping[str, Any]] | None = None,
        grace: float = 0.0,
        force: bool = False,
    ) -> int:
        """Load ``keys`` ahead of traffic; returns how many were stored.

        Keys that are fresh (unless ``force``) or being loaded right now, in
        this process or elsewhere in the fleet, are skipped: warm-up takes
        the same leases as ``get_or_set``, so it never doubles the origin's
        load. Give ``loader(key)`` or ``load_many(keys) -> {key: value}``
        (one call for every key that needs loading); writes are pipelined.
        """
        return warm(self._h(), list(keys), _load_many(loader, load_many), self._dump, _native_ttl(ttl), grace, force)

    @overload
    async def aget_or_set(
        self,
        key: str,
        loader: Callable[[], Awaitable[NoCache[T] | Loaded[T]]],
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    @overload
    async def aget_or_set(
        self,
        key: str,
        loader: Callable[[], Awaitable[T | NoCache[T] | Loaded[T]]],
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    @overload
    async def aget_or_set(
        self,
        key: str,
        loader: Callable[[], NoCache[T] | Loaded[T]],
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    @overload
    async def aget_or_set(
        self,
        key: str,
        loader: Callable[[], T | NoCache[T] | Loaded[T]],
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    @overload
    async def aget_or_set(
        self,
        key: str,
        loader: T,
        ttl: Ttl = ...,
        *,
        grace: float | None = ...,
        allow_stale: bool | None = ...,
        wait_timeout: float | None = ...,
        early_refresh: float | None = ...,
        refresh_ahead: float | None = ...,
        fail_safe: bool | None = ...,
        soft_timeout: float | None = ...,
        hard_timeout: float | None = ...,
        none_ttl: float | None = ...,
        tags: Iterable[str] | None = ...,
        policy: Policy | None = ...,
    ) -> T: ...

    async def aget_or_set(
        self,
        key: str,
        loader: Any,
        ttl: Ttl = DEFAULT,
        *,
        grace: float | None = None,
        allow_stale: bool | None = None,
        wait_timeout: float | None = None,
        early_refresh: float | None = None,
        refresh_ahead: float | None = None,
        fail_safe: bool | None = None,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        none_ttl: float | None = None,
        tags: Iterable[str] | None = None,
        policy: Policy | None = None,
    ) -> Any:
        """Async :meth:`get_or_set`; ``loader`` may be sync or async."""
        p = (policy or self._policy).updated(
            grace=grace,
            allow_stale=allow_stale,
            wait_timeout=wait_timeout,
            early_refresh=early_refresh,
            refresh_ahead=refresh_ahead,
            fail_safe=fail_safe,
            soft_timeout=soft_timeout,
            hard_timeout=hard_timeout,
            none_ttl=none_ttl,
            tags=tuple(tags) if tags is not None else None,
        )
        return await aread_through(
            self._h(), key, loader, self._dump, self._loads, _native_ttl(ttl), p, self._decoding, self._fail_open
        )

    async def awarm(
        self,
        keys: Iterable[str],
        loader: Callable[[str], Any] | None = None,
        ttl: Ttl = DEFAULT,
        *,
        load_many: Callable[[list[str]], Any] | None = None,
        grace: float = 0.0,
        force: bool = False,
    ) -> int:
        """Async :meth:`warm`; ``load_many`` may be async."""
        return await awarm(
            self._h(), list(keys), _load_many(loader, load_many), self._dump, _native_ttl(ttl), grace, force
        )
