"""FastAPI integration: response caching with HTTP semantics, and the cache
as a dependency.

.. code-block:: python

    from fastapi import Depends, FastAPI
    from stratacache import Cache
    from stratacache.fastapi import cached, get_cache, setup

    app = FastAPI()
    setup(app, Cache(redis_url="redis://127.0.0.1:6379", namespace="api"))

    @app.get("/products/{pid}")
    @cached(ttl=60, stale_while_revalidate=30)
    async def product(pid: int):
        return await db.product(pid)

    @app.get("/me/orders")
    @cached(ttl=30, key_by=lambda request: request.state.user_id)  # per user, private
    async def my_orders(request: Request): ...

    @app.post("/products/{pid}")
    async def update(pid: int, cache: Cache = Depends(get_cache)): ...

What ``@cached`` does (GET and HEAD only; other methods pass through):

- Caches the *rendered* response (status, headers, body bytes). A return
  value that is not a ``Response`` is rendered as FastAPI's default JSON
  (``jsonable_encoder``), so return the already-filtered model when the
  route relies on ``response_model`` filtering.
- Concurrent misses of one URL run the endpoint once (single-flight).
- Strong ETag from the body hash, ``If-None-Match`` → ``304``.
- ``Cache-Control`` out: ``public``/``private``, ``max-age`` (what is left of
  the TTL), ``stale-while-revalidate``; ``Age``; ``Vary``.
- Honoured in: a response with ``Cache-Control: no-store`` or ``private``
  (unless keyed per user), or one that sets cookies, or a status other than
  200, is returned but never stored; request ``no-store`` bypasses the
  cache; request ``no-cache`` revalidates (the endpoint runs and the entry
  is replaced).
- A request carrying ``Authorization`` or a session cookie is never served
  from a shared entry: with ``key_by`` it gets its own private entry,
  without it bypasses the cache.
- ``X-Cache: HIT | MISS | STALE | BYPASS`` (``x_cache=False`` turns it off).
- ``stale_while_revalidate=N``: for N seconds after the TTL a stale entry is
  served at once (``X-Cache: STALE``) while exactly one request (one per
  fleet with Redis) re-runs the endpoint in the background.
- ``stale_if_error=N`` (fail-safe): when the endpoint raises and an entry at
  most N seconds past its TTL exists, that entry is served instead of the
  error, and kept for ``fail_safe_throttle`` seconds so a failing backend is
  not hammered.
- Concurrent misses across processes sharing Redis run the endpoint once
  (the fleet lease).
- ``tags=[...]`` (or a callable on the request): the stored responses carry
  these tags; ``await cache.ainvalidate_tags([...])`` makes them stale in
  every process.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Callable, TypeVar, Union

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from . import _native
from . import http as rules
from ._loading import Policy
from .client import Cache
from .http import DEFAULT_CREDENTIAL_COOKIES
from .serializers import FORMAT_RAW

__all__ = ["cached", "get_cache", "setup"]

log = logging.getLogger("stratacache")

F = TypeVar("F", bound=Callable[..., Any])
KeyBy = Callable[[Request], Union[str, Awaitable[str]]]

_REQUEST_PARAM = "__stratacache_request"


def setup(app: FastAPI, cache: Cache) -> None:
    """Make ``cache`` the app's cache (for ``@cached`` and ``Depends(get_cache)``)."""
    app.state.stratacache = cache


def get_cache(request: Request) -> Cache:
    """FastAPI dependency: the cache given to :func:`setup`."""
    cache = getattr(request.app.state, "stratacache", None)
    if cache is None:
        raise RuntimeError("stratacache.fastapi.setup(app, cache) was not called")
    return cache  # type: ignore[no-any-return]


class _NotShareable(Exception):
    """Releases coalesced requests when the leader's response may not be shared."""


def cached(
    ttl: int = 60,
    *,
    cache: Cache | None = None,
    stale_while_revalidate: int = 0,
    vary: Sequence[str] = (),
    key_by: KeyBy | None = None,
    credential_cookies: Sequence[str] = DEFAULT_CREDENTIAL_COOKIES,
    x_cache: bool = True,
    stale_if_error: int = 0,
    fail_safe_throttle: float = 30.0,
    tags: Sequence[str] | Callable[[Request], Sequence[str]] = (),
) -> Callable[[F], F]:
    """Cache a path operation's response; see the module docs."""
    if ttl <= 0:
        raise ValueError("ttl must be > 0 seconds")
    vary_headers = [h.lower() for h in vary]
    swr = int(stale_while_revalidate)
    sie = int(stale_if_error)
    if swr < 0 or sie < 0:
        raise ValueError("stale_while_revalidate and stale_if_error must be >= 0 seconds")
    grace = float(max(swr, sie))
    base_policy = Policy(allow_stale=swr > 0, fail_safe=sie > 0, grace=grace, fail_safe_throttle=fail_safe_throttle)

    def decorator(endpoint: F) -> F:
        sig = inspect.signature(endpoint)
        wants_request = next((n for n, p in sig.parameters.items() if p.annotation in (Request, "Request")), None)
        params = list(sig.parameters.values())
        if wants_request is None:
            # FastAPI injects the request into any parameter annotated Request.
            params.append(inspect.Parameter(_REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request))
        route_id = f"{endpoint.__module__}.{endpoint.__qualname__}"
        is_async = inspect.iscoroutinefunction(endpoint)

        async def call_endpoint(kwargs: dict[str, Any]) -> Response:
            if is_async:
                result = await endpoint(**kwargs)
            else:
                result = await run_in_threadpool(endpoint, **kwargs)
            if isinstance(result, Response):
                return result
            return JSONResponse(jsonable_encoder(result))

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            request: Request = kwargs[wants_request] if wants_request else kwargs.pop(_REQUEST_PARAM)
            c = cache or get_cache(request)
            if request.method not in ("GET", "HEAD"):
                return await call_endpoint(kwargs)
            req_directives = rules.directives(request.headers.get("cache-control"))
            principal: str | None = None
            if rules.has_credentials(
                request.headers.get("authorization"), request.headers.get("cookie"), credential_cookies
            ):
                if key_by is None:
                    return _mark(await call_endpoint(kwargs), "BYPASS", x_cache)
                p = key_by(request)
                principal = str(await p if inspect.isawaitable(p) else p)
            if "no-store" in req_directives:
                return _mark(await call_endpoint(kwargs), "BYPASS", x_cache)
            key = rules.request_key(
                route=route_id,
                method="GET",
                path=request.url.path,
                query=request.query_params.multi_items(),
                vary={h: request.headers.get(h, "") for h in vary_headers},
                principal=principal,
            )
            private = principal is not None
            entry_tags = list(tags(request) if callable(tags) else tags)
            policy = base_policy.updated(tags=tuple(entry_tags) or None)

            def serve(entry: bytes, state: str) -> Response | None:
                a = rules.answer(entry, time.time(), private, swr, vary_headers, request.headers.get("if-none-match"))
                if a is None:
                    return None
                response = Response(content=a.body or b"", status_code=a.status)
                for k, v in a.headers:
                    response.headers.append(k, v)
                return _mark(response, state, x_cache)

            async def produce() -> tuple[Response, bytes | None]:
                response = await call_endpoint(kwargs)
                body = bytes(response.body) if hasattr(response, "body") else None
                if body is None:  # streaming responses are not stored
                    return response, None
                entry = rules.store(response.status_code, response.headers.items(), body, time.time(), ttl, private)
                return response, entry

            if "no-cache" in req_directives:
                response, entry = await produce()
                if entry is None:
                    return _mark(response, "BYPASS", x_cache)
                await c._n.aset(key, entry, FORMAT_RAW, float(ttl), grace, entry_tags or None)
                return serve(entry, "MISS") or _mark(response, "BYPASS", x_cache)

            try:
                kind, _fmt, data, lease = await c._n.alookup(key, policy.native)
            except _NotShareable:
                # The leader's response may not be shared: produce our own.
                return _mark(await call_endpoint(kwargs), "BYPASS", x_cache)
            if kind == _native.STALE and lease is not None:
                # Serve the stale entry now; this request's lease refreshes
                # it in the background (once for everyone).
                _refresh_in_background(lease, produce, float(ttl), grace, entry_tags)
                lease = None
            if kind != _native.LEAD and data is not None and lease is None:
                served = serve(data, "HIT" if kind == _native.FRESH else "STALE")
                if served is not None:
                    return served
            if lease is None:  # undecodable entry: load without coalescing
                response, _ = await produce()
                return _mark(response, "BYPASS", x_cache)
            # We lead (a miss): run the endpoint once; everyone waiting on
            # this URL gets the result.
            try:
                response, entry = await produce()
            except Exception as e:
                if lease.fallback() is not None:
                    _fmt, stale = await lease.afail(e)  # fail-safe: serve stale
                    served = serve(stale, "STALE")
                    if served is not None:
                        return served
                    raise
                lease.abandon(e)
                raise
            except BaseException as e:
                lease.abandon(e)
                raise
            if entry is None:
                # Not storable (no-store, private, cookies, not 200): it may
                # not be shared either, so the waiters produce their own.
                lease.abandon(_NotShareable())
                return _mark(response, "BYPASS", x_cache)
            await lease.acomplete(entry, FORMAT_RAW, float(ttl), grace, entry_tags or None)
            return serve(entry, "MISS") or _mark(response, "MISS", x_cache)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


_refreshes: set[asyncio.Task[None]] = set()


def _refresh_in_background(
    lease: _native.Lease,
    produce: Callable[[], Awaitable[tuple[Response, bytes | None]]],
    ttl: float,
    grace: float,
    tags: list[str],
) -> None:
    async def refresh() -> None:
        try:
            _, entry = await produce()
        except Exception as e:
            log.warning("stratacache: background refresh of %r failed: %s", lease.key, e)
            if lease.fallback() is not None:
                await lease.afail(e)
            else:
                lease.abandon(e)
            return
        if entry is None:
            lease.abandon(_NotShareable())
        else:
            await lease.acomplete(entry, FORMAT_RAW, ttl, grace, tags or None)

    task = asyncio.get_running_loop().create_task(refresh())
    _refreshes.add(task)
    task.add_done_callback(_refreshes.discard)


def _mark(response: Response, state: str, x_cache: bool) -> Response:
    if x_cache:
        response.headers["x-cache"] = state
    return response
