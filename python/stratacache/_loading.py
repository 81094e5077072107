"""Running a loader for a lease: the one protocol every Python surface
(``Cache.get_or_set``, the Django backend, the FastAPI decorator) follows,
sync and async.

The caller that leads a key runs the loader, then completes the lease with
the serialized value, or fails it with the loader's exception so every
coalesced caller gets that same object (or, with fail-safe, the stale
value). Refreshes of stale or early-refresh values run in the background:
on a small thread pool for sync callers, as a task on the caller's loop for
async ones.

What a load's outcome means (``none_ttl``, ``NoCache``, fail-safe or the
error, each deadline) is decided by the core (``Lease.settle``,
``Lease.fail``, ``Lease.deadline_passed``); this module only runs the
loader where Python needs it run. With deadlines, the loader runs
concurrently with the caller's wait (on a thread pool for sync callers, as
a task for async ones) so the caller can stop waiting; the load goes on
and still fills the cache when it finishes.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar, copy_context
from typing import Any, Generic, Literal, TypeVar

from . import _failopen, _native
from .exceptions import LoaderTimeoutError, RedisError
from .serializers import Unreadable

log = logging.getLogger("stratacache")

T = TypeVar("T")
Dumps = Callable[[Any], "tuple[bytes, int]"]
Loads = Callable[["tuple[int, bytes]"], Any]


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How a hit is decoded in the native call (so kept decoded values can
    be handed out, see ``_native.Cache.get_value``): the serializer's
    ``loads(format, data)``, its memo key, and what an entry in a format it
    does not accept reads as."""

    loads: Callable[[int, bytes], Any]
    memo: int
    unreadable: Callable[[Unreadable], Any]


#: What the load running here reads: the collector the tracked reads
#: (``Cache.get``, ``get_many``, nested ``get_or_set``, ``depends_on``)
#: record into, so the value it builds depends on them (see the core's
#: ``deps``). Tasks started inside a loader inherit it; threads do not.
current_deps: ContextVar[_native.Deps | None] = ContextVar("stratacache_deps", default=None)


def _scope(lease: _native.Lease) -> _native.Deps | None:
    """A collector for the load of ``lease``, unless its cache does not
    track dependencies (``track_dependencies=False``)."""
    return _native.Deps() if lease.tracks_dependencies else None


def _call_tracked(loader: Any, deps: _native.Deps | None) -> Any:
    if deps is None:
        return loader() if callable(loader) else loader
    token = current_deps.set(deps)
    try:
        return loader() if callable(loader) else loader
    finally:
        current_deps.reset(token)


async def _acall_tracked(loader: Any, deps: _native.Deps | None) -> Any:
    if deps is None:
        value = loader() if callable(loader) else loader
        return await value if inspect.isawaitable(value) else value
    token = current_deps.set(deps)
    try:
        value = loader() if callable(loader) else loader
        if inspect.isawaitable(value):
            value = await value
        return value
    finally:
        current_deps.reset(token)


_pool: ThreadPoolExecutor | None = None
_timed_pool: ThreadPoolExecutor | None = None
_tasks: set[asyncio.Future[Any]] = set()


def _after_fork_in_child() -> None:
    global _pool, _timed_pool
    _pool = None  # their threads did not survive the fork
    _timed_pool = None
    _native.after_fork_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Before finalization: runtime threads stop attaching to Python (see the
# binding's runtime.rs). Registered at import, so it runs after the hooks
# of code that imported stratacache (atexit runs hooks last in, first out).
atexit.register(_native._at_exit)


class NoCache(Generic[T]):
    """Return ``NoCache(value)`` from a loader to hand ``value`` to every
    waiting caller without caching it (negative caching's "don't cache")."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"NoCache({self.value!r})"


class Loaded(Generic[T]):
    """Return ``Loaded(value, ttl=..., grace=..., tags=[...])`` from a
    loader to choose the entry's lifetime and tags from what was loaded
    (adaptive caching): a given ``ttl`` or ``grace`` (seconds) replaces the
    caller's (``ttl=0``: hand the value out, do not store it;
    ``ttl=float("inf")``: never expires; ``None``, the default: the
    caller's); ``tags`` are added to the caller's."""

    __slots__ = ("grace", "tags", "ttl", "value")

    def __init__(
        self, value: T, *, ttl: float | None = None, grace: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        if isinstance(tags, str):
            raise TypeError("Loaded(tags=...) takes a list of tag names, not one string")
        self.value = value
        self.ttl = ttl
        self.grace = grace
        self.tags = list(tags)

    def _adapt(self) -> tuple[float | None, float | None, list[str] | None]:
        return (self.ttl, self.grace, self.tags or None)

    def __repr__(self) -> str:
        return f"Loaded({self.value!r}, ttl={self.ttl!r}, grace={self.grace!r}, tags={self.tags!r})"


Adapt = tuple[float | None, float | None, list[str] | None]


@dataclasses.dataclass(frozen=True)
class Policy:
    """How ``get_or_set`` reads through. Every field is optional.

    - ``allow_stale`` + ``grace``: stale-while-revalidate: a value past its
      TTL but within ``grace`` seconds is returned at once while exactly one
      background refresh runs (one per fleet with Redis).
    - ``early_refresh`` (XFetch beta, e.g. 1.0) / ``refresh_ahead`` (a
      fraction of the TTL, e.g. 0.2): hot keys are reloaded in the
      background before they expire.
    - ``fail_safe``: when the loader raises, or exceeds ``soft_timeout``, and
      a stale value (within ``grace``) exists, serve it; after a failure it
      is kept fresh for ``fail_safe_throttle`` seconds so a failing origin
      is not hammered (the core's default when ``None``: 30 s).
    - ``hard_timeout``: no caller waits longer; past it a caller gets the
      fail-safe value or :class:`LoaderTimeoutError` (the load goes on).
    - ``wait_timeout`` / ``on_wait_timeout``: how long to wait for another
      caller's (or process's) load, then ``"load"`` it yourself (default)
      or ``"fail"`` with :class:`WaitTimeoutError`.
    - ``none_ttl``: TTL for a loader's ``None`` result (``0``: never cache
      ``None``); ``None`` (default) treats it like any value.
    - ``tags``: the loaded value carries these tags; their versions are
      recorded when the load starts, so ``invalidate_tags`` during the load
      makes its result stale at once.
    """

    allow_stale: bool = False
    grace: float = 0.0
    early_refresh: float | None = None
    refresh_ahead: float | None = None
    fail_safe: bool = False
    fail_safe_throttle: float | None = None
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    wait_timeout: float | None = None
    on_wait_timeout: Literal["load", "fail"] = "load"
    none_ttl: float | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.on_wait_timeout not in ("load", "fail"):
            raise ValueError("on_wait_timeout must be 'load' or 'fail'")
        if self.grace < 0:
            raise ValueError("grace must be >= 0")
        self.native  # noqa: B018 -- validate every field now, not on first use

    @functools.cached_property
    def native(self) -> _native.Policy:
        return _native.Policy(
            allow_stale=self.allow_stale,
            wait_timeout=self.wait_timeout,
            early_refresh=self.early_refresh,
            refresh_ahead=self.refresh_ahead,
            fail_safe=self.fail_safe,
            fail_safe_throttle=self.fail_safe_throttle,
            soft_timeout=self.soft_timeout,
            hard_timeout=self.hard_timeout,
            wait_timeout_fails=self.on_wait_timeout == "fail",
            tags=list(self.tags) or None,
            none_ttl=self.none_ttl,
        )

    @property
    def checks_l1_only(self) -> bool:
        """Whether a fresh L1 hit can be answered without the core's lookup
        (no early refresh to decide)."""
        return self.early_refresh is None and self.refresh_ahead is None

    def updated(self, **overrides: Any) -> Policy:
        """This policy with the non-``None`` overrides applied."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return _replace(self, tuple(sorted(changes.items()))) if changes else self


@functools.lru_cache(maxsize=256)
def _replace(policy: Policy, changes: tuple[tuple[str, Any], ...]) -> Policy:
    return dataclasses.replace(policy, **dict(changes))


def _outcome(value: Any, dumps: Dumps) -> tuple[int, Any, bytes, int, Adapt | None]:
    """What the loader did, for the core to settle: ``(kind, answer,
    data, format, adapt)``; the core applies ``none_ttl`` and a
    :class:`Loaded`'s choices."""
    if isinstance(value, NoCache):
        data, fmt = dumps(value.value)
        return _native.UNCACHED, value.value, data, fmt, None
    adapt = None
    if isinstance(value, Loaded):
        adapt, value = value._adapt(), value.value
    data, fmt = dumps(value)
    return (_native.NOTHING if value is None else _native.VALUE), value, data, fmt, adapt


class _Stale:
    """A fail-safe answer: serialized stale value to deserialize."""

    __slots__ = ("value",)

    def __init__(self, value: tuple[int, bytes]) -> None:
        self.value = value


def _load_and_finish(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, policy: Policy) -> Any:
    """Run the loader and settle the lease: the value, a :class:`_Stale`
    (fail-safe after a failure), or the loader's exception."""
    deps = _scope(lease)
    try:
        value = _call_tracked(loader, deps)
    except Exception as e:
        stale = lease.fail(e)
        if stale is None:
            raise
        return _Stale(stale)
    except BaseException as e:
        lease.abandon(e)
        raise
    try:
        kind, answer, data, fmt, adapt = _outcome(value, dumps)
        lease.settle(kind, data, fmt, ttl, policy.grace, list(policy.tags) or None, deps, adapt)
        return answer
    except BaseException as e:
        # Unserializable value (or a closed cache): nothing stored, and the
        # waiters get the same error.
        _abandon_quietly(lease, e)
        raise


async def _aload_and_finish(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, policy: Policy) -> Any:
    deps = _scope(lease)
    try:
        value = await _acall_tracked(loader, deps)
    except Exception as e:
        stale = await lease.afail(e)
        if stale is None:
            raise
        return _Stale(stale)
    except BaseException as e:
        lease.abandon(e)
        raise
    try:
        kind, answer, data, fmt, adapt = _outcome(value, dumps)
        await lease.asettle(kind, data, fmt, ttl, policy.grace, list(policy.tags) or None, deps, adapt)
        return answer
    except BaseException as e:
        _abandon_quietly(lease, e)
        raise


def _answer(result: Any, loads: Loads) -> Any:
    """What a lead's caller gets: the loaded value, or the stale one fail-safe
    served; noted for stratacache.otel's span (after the loader's own reads,
    which noted theirs)."""
    if isinstance(result, _Stale):
        return _stale(result.value, loads)
    _native.note_served(_native.SERVED_LOADED)
    return result


def _stale(data: tuple[int, bytes], loads: Loads) -> Any:
    """A stale value a lead's caller gets instead of the load's."""
    value = loads(data)
    _native.note_served(_native.SERVED_STALE)
    return value


def _log_background_failure(key: str) -> Callable[[Any], None]:
    def done(fut: Any) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.warning("stratacache: load of %r (finished in the background) failed: %s", key, exc)

    return done


def _passed(lease: _native.Lease, hard: bool, done: Callable[[], bool]) -> tuple[int, bytes] | None:
    """The core's answer at a deadline; ``None`` (keep waiting: the load
    is done, or a soft deadline without a stale value) when the load
    finished meanwhile, even at the hard deadline."""
    if done():
        return None
    try:
        return lease.deadline_passed(hard)
    except LoaderTimeoutError:
        if done():  # finished while the core was asked
            return None
        raise


def run_loader(lease: _native.Lease, loader: Any, dumps: Dumps, loads: Loads, ttl: float | None, policy: Policy) -> Any:
    """Run ``loader`` (or take it as the value) for ``lease``; the value
    callers get. With deadlines (the core's: a soft timeout with a stale
    value to serve, a hard timeout), the loader runs on a thread while this
    caller waits for each deadline in turn and asks the core what it means;
    the load goes on and still fills the cache."""
    if lease.deadline(0) is None:
        return _answer(_load_and_finish(lease, loader, dumps, ttl, policy), loads)
    global _timed_pool
    if _timed_pool is None:
        _timed_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="stratacache-load")
    # In the caller's context, as an untimed loader runs (a `disabled()`
    # block, the caller's own context variables).
    fut = _timed_pool.submit(copy_context().run, _load_and_finish, lease, loader, dumps, ttl, policy)
    fut.add_done_callback(_log_background_failure(lease.key))
    i = 0
    while (deadline := lease.deadline(i)) is not None:
        left, hard = deadline
        try:
            return _answer(fut.result(timeout=left), loads)
        except concurrent.futures.TimeoutError:
            if (stale := _passed(lease, hard, fut.done)) is not None:
                return _stale(stale, loads)
        i += 1
    return _answer(fut.result(), loads)


async def arun_loader(
    lease: _native.Lease, loader: Any, dumps: Dumps, loads: Loads, ttl: float | None, policy: Policy
) -> Any:
    """Async :func:`run_loader`; ``loader`` may be sync or async."""
    if lease.deadline(0) is None:
        return _answer(await _aload_and_finish(lease, loader, dumps, ttl, policy), loads)
    task = asyncio.ensure_future(_aload_and_finish(lease, loader, dumps, ttl, policy))
    _tasks.add(task)  # keep a reference until it is done
    task.add_done_callback(_tasks.discard)
    task.add_done_callback(_log_background_failure(lease.key))
    i = 0
    while (deadline := lease.deadline(i)) is not None:
        left, hard = deadline
        done, _ = await asyncio.wait({task}, timeout=left)
        if done:
            return _answer(task.result(), loads)
        if (stale := _passed(lease, hard, task.done)) is not None:
            return _stale(stale, loads)
        i += 1
    return _answer(await task, loads)


def refresh_in_background(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, policy: Policy) -> None:
    """Run the refresh a lease asks for on the background thread pool."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stratacache-refresh")

    def refresh() -> None:
        try:
            _load_and_finish(lease, loader, dumps, ttl, policy)
        except Exception:
            log.exception("stratacache: background refresh of %r failed", lease.key)

    _pool.submit(refresh)


def arefresh_in_background(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, policy: Policy) -> None:
    """Run the refresh a lease asks for as a task on the running loop."""

    async def refresh() -> None:
        try:
            await _aload_and_finish(lease, loader, dumps, ttl, policy)
        except Exception:
            log.exception("stratacache: background refresh of %r failed", lease.key)

    task = asyncio.get_running_loop().create_task(refresh())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


_MISS = object()


def read_through(
    n: _native.Cache,
    key: str,
    loader: Any,
    dumps: Dumps,
    loads: Loads,
    ttl: float | None,
    policy: Policy,
    decoding: Decoding,
    fail_open: bool = False,
) -> Any:
    """The whole sync ``get_or_set`` on the native cache. With
    ``fail_open``, Redis trouble in the *lookup* (never the loader's own
    errors) answers with the loader's value, logged."""
    parent = current_deps.get()
    try:
        if policy.checks_l1_only and parent is None:
            hit = n.get_local_value(key, decoding.loads, decoding.memo, _MISS)
            if hit is not _MISS:
                return hit
        kind, value, lease = n.lookup_value(key, policy.native, decoding.loads, decoding.memo, parent)
    except Unreadable as e:
        return decoding.unreadable(e)
    except RedisError as e:
        _failopen.answer(fail_open, "get_or_set", e, None)
        loaded = _plain(loader() if callable(loader) else loader)
        _native.note_served(_native.SERVED_LOADED)
        return loaded
    if kind == _native.LEAD:
        assert lease is not None
        return run_loader(lease, loader, dumps, loads, ttl, policy)
    if lease is not None:  # a stale value or an early refresh
        refresh_in_background(lease, loader, dumps, ttl, policy)
    return value


async def aread_through(
    n: _native.Cache,
    key: str,
    loader: Any,
    dumps: Dumps,
    loads: Loads,
    ttl: float | None,
    policy: Policy,
    decoding: Decoding,
    fail_open: bool = False,
) -> Any:
    """The whole async ``get_or_set`` on the native cache (see
    :func:`read_through` for ``fail_open``)."""
    parent = current_deps.get()
    try:
        if policy.checks_l1_only and parent is None:
            hit = n.get_local_value(key, decoding.loads, decoding.memo, _MISS)
            if hit is not _MISS:
                return hit
        kind, fmt, data, lease, served = await n.alookup(key, policy.native, parent)
    except Unreadable as e:
        _native.note_served(0)
        return decoding.unreadable(e)
    except RedisError as e:
        _failopen.answer(fail_open, "aget_or_set", e, None)
        value = loader() if callable(loader) else loader
        loaded = _plain(await value if inspect.isawaitable(value) else value)
        _native.note_served(_native.SERVED_LOADED)
        return loaded
    if kind == _native.LEAD:
        assert lease is not None
        return await arun_loader(lease, loader, dumps, loads, ttl, policy)
    if lease is not None:  # a stale value or an early refresh
        arefresh_in_background(lease, loader, dumps, ttl, policy)
    assert fmt is not None and data is not None
    found = loads((fmt, data))
    # How it was served, for stratacache.otel's span: noted after the
    # await, so another task's read in between does not stand for it.
    _native.note_served(served)
    return found


def _plain(v: Any) -> Any:
    """A loaded value without its ``Loaded`` / ``NoCache`` wrapper."""
    return v.value if isinstance(v, (Loaded, NoCache)) else v


def _abandon_quietly(lease: _native.Lease, e: BaseException) -> None:
    try:
        lease.abandon(e)
    except RuntimeError:
        pass  # already settled
