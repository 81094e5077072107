"""FastAPI response caching with HTTP semantics.

::

    app = FastAPI()
    setup(app, cache)                 # the cache, and the middleware that caches

    @app.get("/items/{item_id}", response_model=Item)
    @cached(ttl=60)
    async def item(item_id: int) -> Item: ...

What is cached is what FastAPI sends: the response after ``response_model``,
``status_code``, ``response_class`` and headers set on an injected
``Response``; cached and uncached answers are byte-identical but for
``Age``, ``Date``, ``X-Cache`` and ``Cache-Status``. Hits are answered by
the middleware before the route's dependencies run; background tasks run
only when the endpoint does. The rules (keys, privacy, what may be stored,
``Vary``, validators) are the core's, shared with Express and Fastify: see
:mod:`stratacache.http` and docs/architecture.md.

Private by default: a request with ``Authorization``, any cookie not listed in
``shared_cookies``, or the header of an ``APIKeyHeader`` scheme is never
answered from a shared entry. A cached route whose dependencies use a
``fastapi.security`` scheme, or read a header (not in ``vary``) or a
shared cookie, is refused at startup (or at its first request) unless it
gives ``key_by``. A successful POST/PUT/PATCH/DELETE invalidates the cached
entries of its path in every process.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from starlette.routing import Match

from . import _native
from ._args import _refuse_unknown
from ._loading import Policy
from .client import Cache
from .exceptions import ConfigError
from .http import ASGIApp, HttpRule, KeyBy, Receive, Scope, Send, Tags, handle

__all__ = ["CacheMiddleware", "cached", "get_cache", "metrics_route", "setup"]

log = logging.getLogger("stratacache")

F = TypeVar("F", bound=Callable[..., Any])

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MATCH_MEMO = 10_000
_through_cache: contextvars.ContextVar[bool] = contextvars.ContextVar("stratacache_through_cache", default=False)


@dataclass(frozen=True)
class _Options:
    ttl: float
    cache: Cache | None
    stale_while_revalidate: float
    stale_if_error: float
    vary: tuple[str, ...]
    key_by: KeyBy | None
    shared_cookies: tuple[str, ...]
    private_headers: tuple[str, ...]
    request_directives: str
    x_cache: bool
    tags: Tags
    scope: str | None
    fail_safe_throttle: float | None
    edge_ttl: float = 0.0
    edge_tag_header: str | None = None


def setup(app: FastAPI, cache: Cache, *, scope: str = "") -> None:
    """Make ``cache`` the app's cache (for ``@cached`` and ``Depends(get_cache)``)
    and install the caching middleware. ``scope`` separates the entries of
    apps sharing one namespace."""
    if getattr(app.state, "stratacache", None) is not None:
        raise ConfigError("stratacache.fastapi.setup(app, ...) was called twice for this app")
    app.state.stratacache = cache
    app.add_middleware(CacheMiddleware, fastapi_app=app, cache=cache, scope=scope)


def metrics_route(app: FastAPI, *caches: Cache, path: str = "/metrics", token: str | None = None) -> None:
    """A Prometheus endpoint at ``path`` for ``caches`` (each metric family
    once, a sample per namespace). With ``token``, it answers only
    ``Authorization: Bearer <token>``; without, anyone who reaches it, so
    route it where only your scraper can."""
    import hmac

    from starlette.responses import PlainTextResponse

    from . import metrics_text

    if not caches:
        raise ConfigError("metrics_route(app, cache, ...) needs at least one cache")

    async def metrics(request: Request) -> PlainTextResponse:
        if token and not hmac.compare_digest(
            request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()
        ):
            return PlainTextResponse("unauthorized\n", status_code=401)
        return PlainTextResponse(
            metrics_text(*caches),
            media_type="text/plain; version=0.0.4; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    app.add_api_route(path, metrics, methods=["GET"], include_in_schema=False)


def get_cache(request: Request) -> Cache:
    """FastAPI dependency: the cache given to :func:`setup`."""
    cache = getattr(request.app.state, "stratacache", None)
    if cache is None:
        raise RuntimeError("stratacache.fastapi.setup(app, cache) was not called")
    return cache  # type: ignore[no-any-return]


def cached(
    ttl: float = 60,
    *,
    cache: Cache | None = None,
    stale_while_revalidate: float = 0,
    stale_if_error: float = 0,
    vary: Sequence[str] = (),
    key_by: KeyBy | None = None,
    shared_cookies: Sequence[str] = (),
    private_headers: Sequence[str] = (),
    request_directives: str = "ignore",
    x_cache: bool = True,
    tags: Tags = (),
    scope: str | None = None,
    fail_safe_throttle: float | None = None,
    edge_ttl: float = 0,
    edge_tag_header: str | None = None,
    **unknown: NoReturn,
) -> Callable[[F], F]:
    """Cache a path operation's responses; see the module docs. Options are
    checked here (a bad one raises :class:`ConfigError` at import)."""
    if unknown:
        _refuse_unknown(unknown, cached, "cached()")
    o = _Options(
        float(ttl),
        cache,
        float(stale_while_revalidate),
        float(stale_if_error),
        tuple(vary),
        key_by,
        tuple(shared_cookies),
        tuple(private_headers),
        request_directives,
        x_cache,
        tags if callable(tags) else tuple(tags),
        scope,
        None if fail_safe_throttle is None else float(fail_safe_throttle),
        float(edge_ttl),
        edge_tag_header,
    )
    _route_of(o, "", ())  # validate now

    def decorator(endpoint: F) -> F:
        name = f"{endpoint.__module__}.{endpoint.__qualname__}"
        warned = False

        def check() -> None:
            nonlocal warned
            if not _through_cache.get() and not warned:
                warned = True
                log.warning("stratacache: %s ran without stratacache.fastapi.setup(app, cache): not cached", name)

        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                check()
                return await endpoint(*args, **kwargs)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(endpoint)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                check()
                return endpoint(*args, **kwargs)

            wrapper = sync_wrapper
        wrapper.__stratacache__ = o
        return wrapper  # type: ignore[no-any-return]

    return decorator


def _route_of(o: _Options, scope: str, private_headers: Sequence[str]) -> _native.HttpRoute:
    if o.ttl <= 0:
        raise ConfigError("ttl must be > 0 seconds")
    return _native.HttpRoute(
        ttl=o.ttl,
        stale_while_revalidate=o.stale_while_revalidate,
        stale_if_error=o.stale_if_error,
        vary=list(o.vary),
        shared_cookies=list(o.shared_cookies),
        private_headers=[*o.private_headers, *private_headers],
        keyed=o.key_by is not None,
        request_directives=o.request_directives,
        x_cache=o.x_cache,
        scope=o.scope if o.scope is not None else scope,
        edge_ttl=o.edge_ttl,
        edge_tag_header=o.edge_tag_header,
    )


def _dependants(d: Any) -> list[Any]:
    out = [d]
    for sub in getattr(d, "dependencies", []):
        out.extend(_dependants(sub))
    return out


def _header_name(p: Any) -> str:
    name = str(p.alias)
    if getattr(p.field_info, "convert_underscores", True):
        name = name.replace("_", "-")
    return name.lower()


def _inspect(route: APIRoute, o: _Options) -> list[str]:
    """The private headers the route's security schemes read; raises
    ConfigError when a shared entry could serve one client's answer to
    another."""
    schemes: list[str] = []
    reads: list[str] = []
    headers: list[str] = []
    vary = {v.lower() for v in o.vary}
    for d in _dependants(route.dependant):
        call = getattr(d, "call", None)
        if isinstance(call, SecurityBase):
            schemes.append(call.scheme_name)
            model = call.model
            if str(getattr(getattr(model, "in_", None), "value", "")) == "header":
                headers.append(str(model.name).lower())  # type: ignore[attr-defined]
        for p in d.header_params:
            if _header_name(p) not in vary:
                reads.append(f"header {_header_name(p)!r}")
        for p in d.cookie_params:
            if p.alias in o.shared_cookies:
                reads.append(f"shared cookie {p.alias!r}")
    if o.key_by is None and (schemes or reads):
        what = ", ".join([f"security scheme {s}" for s in schemes] + reads)
        raise ConfigError(
            f"@cached route {sorted(route.methods or [])} {route.path} ({route.name}) depends on {what}: "
            "a shared entry would serve one client's response to another. Give key_by=... (entries per "
            "principal), or add the header to vary=[...]"
        )
    return headers


class CacheMiddleware:
    """ASGI middleware answering ``@cached`` routes through the cache (and
    invalidating on successful unsafe requests). Installed by :func:`setup`."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI, cache: Cache, scope: str = "") -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.cache = cache
        self.scope = scope
        self._rules: dict[int, HttpRule] = {}
        self._matches: dict[tuple[str, str], APIRoute | None] = {}
        unsafe = _Options(60.0, cache, 0, 0, (), None, (), (), "ignore", False, (), scope, 30.0)
        self._unsafe = HttpRule(cache, _route_of(unsafe, scope, ()))

    def _match(self, scope: Scope) -> APIRoute | None:
        memo = (scope["method"], scope["path"])
        if memo in self._matches:
            return self._matches[memo]
        found = None
        for route in self.fastapi_app.router.routes:
            if isinstance(route, APIRoute) and route.matches(scope)[0] == Match.FULL:
                found = route
                break
        if len(self._matches) >= _MATCH_MEMO:
            self._matches.clear()
        self._matches[memo] = found
        return found

    def _rule(self, route: APIRoute) -> HttpRule | None:
        rule = self._rules.get(id(route))
        if rule is not None:
            return rule
        o: _Options | None = getattr(route.endpoint, "__stratacache__", None)
        if o is None:
            return None
        private = _inspect(route, o)
        policy = Policy(
            allow_stale=o.stale_while_revalidate > 0,
            fail_safe=o.stale_if_error > 0,
            fail_safe_throttle=o.fail_safe_throttle,
        )
        rule = HttpRule(o.cache or self.cache, _route_of(o, self.scope, private), o.key_by, o.tags, policy)
        self._rules[id(route)] = rule
        return rule

    def _check_all(self) -> None:
        # A session middleware outside this one would add its Set-Cookie
        # after the response was judged shareable.
        try:
            from starlette.middleware.sessions import SessionMiddleware
        except ImportError:  # needs itsdangerous: then nobody uses it
            SessionMiddleware = None  # type: ignore[assignment,misc]
        for m in self.fastapi_app.user_middleware:
            cls: Any = m.cls
            if cls is CacheMiddleware:
                break
            if cls is SessionMiddleware:
                raise ConfigError(
                    "SessionMiddleware was added after stratacache.fastapi.setup(): add it first, so the cache "
                    "sees the Set-Cookie it adds (responses that set cookies are never shared)"
                )
        for route in self.fastapi_app.router.routes:
            if isinstance(route, APIRoute):
                self._rule(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Refuse unsafe routes at startup: the server reports the failure
            # and exits (raising from `receive` would be swallowed).
            first = await receive()
            if first["type"] == "lifespan.startup":
                try:
                    self._check_all()
                except ConfigError as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
            replayed = [first]

            async def replay() -> dict[str, Any]:
                return replayed.pop() if replayed else await receive()

            await self.app(scope, replay, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._match(scope)
        rule = self._rule(route) if route is not None else None
        if rule is None:
            if scope["method"] not in _UNSAFE:
                await self.app(scope, receive, send)
                return
            rule = self._unsafe
        token = _through_cache.set(True)
        try:
            await handle(rule, self.app, scope, receive, send, Request(scope, receive), self)
        finally:
            _through_cache.reset(token)
