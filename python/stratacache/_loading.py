"""Running a loader for a lease: the one protocol every Python surface
(``Cache.get_or_set``, the Django backend) follows, sync and async.

The caller that leads a key runs the loader in its own thread or task,
then completes the lease with the serialized value, or abandons it with
the loader's exception so every coalesced caller gets that same object.
Refreshes of stale or early-refresh values run in the background: on a
small thread pool for sync callers, as a task on the caller's loop for
async ones.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from . import _native

log = logging.getLogger("stratacache")

Dumps = Callable[[Any], "tuple[bytes, int]"]

_pool: ThreadPoolExecutor | None = None
_tasks: set[asyncio.Task[Any]] = set()


def _after_fork_in_child() -> None:
    global _pool
    _pool = None  # its threads did not survive the fork
    _native.after_fork_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def run_loader(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, grace: float) -> Any:
    """Run ``loader`` (or take it as the value) and complete ``lease``."""
    try:
        value = loader() if callable(loader) else loader
        data, fmt = dumps(value)
    except BaseException as e:
        lease.abandon(e)
        raise
    lease.complete(data, fmt, ttl, grace)
    return value


async def arun_loader(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, grace: float) -> Any:
    """Async :func:`run_loader`; ``loader`` may be sync or async."""
    try:
        value = loader() if callable(loader) else loader
        if inspect.isawaitable(value):
            value = await value
        data, fmt = dumps(value)
    except BaseException as e:
        lease.abandon(e)
        raise
    await lease.acomplete(data, fmt, ttl, grace)
    return value


def refresh_in_background(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, grace: float) -> None:
    """Run the refresh a lease asks for on the background thread pool."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stratacache-refresh")

    def refresh() -> None:
        try:
            run_loader(lease, loader, dumps, ttl, grace)
        except Exception:
            log.exception("stratacache: background refresh of %r failed", lease.key)

    _pool.submit(refresh)


def arefresh_in_background(lease: _native.Lease, loader: Any, dumps: Dumps, ttl: float | None, grace: float) -> None:
    """Run the refresh a lease asks for as a task on the running loop."""

    async def refresh() -> None:
        try:
            await arun_loader(lease, loader, dumps, ttl, grace)
        except Exception:
            log.exception("stratacache: background refresh of %r failed", lease.key)

    task = asyncio.get_running_loop().create_task(refresh())
    _tasks.add(task)  # keep a reference until it is done
    task.add_done_callback(_tasks.discard)
