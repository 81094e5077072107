"""Whole Django pages through the HTTP engine: ``cache_page`` with single
flight across the fleet, tags, tracked dependencies, ETag / 304 and the
edge headers.

::

    from stratacache.django import cache_page

    @cache_page(60, tags=["catalog"], edge_ttl=300, edge_tag_header="Surrogate-Key")
    def product(request, pk): ...

Django's own ``cache_page`` stores through any backend with a ``get`` and
a ``set``: every process that misses renders the page, and nothing
invalidates it but its TTL. This one runs the view through the same
engine and driver as the FastAPI integration (:mod:`stratacache.http`;
every rule is the core's, shared with Express and Fastify): one render
per page across the fleet while other requests wait, ``tags`` and what
the view reads through the cache as its dependencies, validators
answered with 304, ``Vary``, stale-while-revalidate / stale-if-error, and
``edge_ttl`` / ``edge_tag_header`` for a CDN in front. Private by
default: a request with ``Authorization``, a cookie not in
``shared_cookies`` (Django's ``sessionid``, ``csrftoken``) or one of
``private_headers`` is served by the view unless ``key_by`` gives its
principal; a page that used the CSRF token or the session (a form,
``request.user``) is sent ``Cache-Control: private`` and never stored.
A successful POST, PUT, PATCH or DELETE to the view invalidates the page
in every process.

A sync view runs in its request's thread (Django's connections and
transactions stay where they are); the engine's I/O runs on an event
loop thread of this module. An async view runs on the server's loop. A
background refresh (``stale_while_revalidate``) runs the view again in a
worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import os
import queue
import threading
from collections.abc import Callable, Sequence
from http.cookies import SimpleCookie
from typing import Any, NoReturn, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from .. import _native
from .._args import _refuse_unknown
from ..exceptions import ConfigError
from ..http import ASGIApp, HttpRule, KeyBy, Message, Receive, Scope, Send, Tags, handle

__all__ = ["cache_page"]

V = TypeVar("V", bound=Callable[..., Any])


def cache_page(
    ttl: float,
    *,
    cache: str = "default",
    tags: Tags = (),
    stale_while_revalidate: float = 0,
    stale_if_error: float = 0,
    vary: Sequence[str] = (),
    key_by: KeyBy | None = None,
    shared_cookies: Sequence[str] = (),
    private_headers: Sequence[str] = (),
    request_directives: str = "ignore",
    x_cache: bool = True,
    edge_ttl: float = 0,
    edge_tag_header: str | None = None,
    **unknown: NoReturn,
) -> Callable[[V], V]:
    """Cache a view's responses (see the module docs). ``cache`` is a
    :class:`~stratacache.django.StrataCache` alias; ``key_by(request)``
    returns the principal of a private request (its answer is then cached
    for it alone); ``tags`` may be a callable of the request. Options are
    checked here: a bad one raises :class:`ConfigError` at import."""
    if unknown:
        _refuse_unknown(unknown, cache_page, "cache_page()")
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl <= 0:
        raise ConfigError(f"ttl must be a number of seconds > 0, not {ttl!r}")
    route_options: dict[str, Any] = {
        "ttl": float(ttl),
        "stale_while_revalidate": float(stale_while_revalidate),
        "stale_if_error": float(stale_if_error),
        "vary": list(vary),
        "shared_cookies": list(shared_cookies),
        "private_headers": list(private_headers),
        "keyed": key_by is not None,
        "request_directives": request_directives,
        "x_cache": x_cache,
        "scope": "",
        "edge_ttl": float(edge_ttl),
        "edge_tag_header": edge_tag_header,
    }
    route = _native.HttpRoute(**route_options)
    rules: list[HttpRule] = []

    def rule() -> HttpRule:
        # The alias is looked up at the first request, not at import.
        if not rules:
            from django.core.cache import caches

            from .backend import StrataCache

            backend = caches[cache]
            if not isinstance(backend, StrataCache):
                raise ConfigError(
                    f"cache_page(cache={cache!r}) needs a StrataCache alias, not {type(backend).__name__}"
                )
            r = route
            if _localized() and "accept-language" not in {v.lower() for v in vary}:
                # LocaleMiddleware picks the language from Accept-Language
                # (a cookie makes the request private, a URL prefix another
                # page): a page is one per language.
                r = _native.HttpRoute(**{**route_options, "vary": [*vary, "accept-language"]})
            rules.append(HttpRule(backend._c, r, key_by, tags if callable(tags) else tuple(tags)))
        return rules[0]

    def decorate(view: V) -> V:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def serve_async(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                async def call() -> HttpResponse:
                    try:
                        response = await view(request, *args, **kwargs)
                    except Exception as e:
                        response = _as_response(request, e)
                    return await _rendered_async(response, request)

                r = rule()
                if callable(r.tags) or (r.key_by is not None and not iscoroutinefunction(r.key_by)):
                    # User code (key_by, tags) may touch the database: a thread.
                    r = await sync_to_async(_for_request)(r, request, None)
                return await _serve(r, _asgi(call), request)

            return serve_async  # type: ignore[return-value]

        @functools.wraps(view)
        def serve(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return _serve_sync(rule(), view, request, args, kwargs)

        return serve  # type: ignore[return-value]

    return decorate


# -- the engine's loop, for sync views -------------------------------------------

_loop_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop, threading.Thread] | None = None


def _engine_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop thread (a new one after a fork, or if
    the thread died)."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid() or not _loop[2].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="stratacache-django-pages", daemon=True)
            thread.start()
            _loop = (os.getpid(), loop, thread)
        return _loop[1]


def _reset_after_fork() -> None:
    global _loop_lock
    _loop_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _serve_sync(rule: HttpRule, view: Callable[..., Any], request: HttpRequest, args: Any, kwargs: Any) -> HttpResponse:
    """Drive the engine on its loop; run the view (and the route's
    ``key_by``) here, in the request's thread, when the engine asks."""
    loop = _engine_loop()
    jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()

    async def in_request_thread(fn: Callable[[], Any]) -> Any:
        done: asyncio.Future[Any] = loop.create_future()
        ctx = contextvars.copy_context()  # the handler's dependency scope

        def job() -> None:
            try:
                r = ctx.run(fn)
            except Exception as e:  # handed to the engine as it is
                loop.call_soon_threadsafe(_fail, done, e)
            except BaseException:
                # SystemExit, KeyboardInterrupt: the loop must not see them.
                loop.call_soon_threadsafe(_fail, done, RuntimeError("the view was interrupted"))
                raise
            else:
                loop.call_soon_threadsafe(_succeed, done, r)

        jobs.put(job)
        return await done

    def run_view() -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except Exception as e:
            response = _as_response(request, e)
        return _rendered(response, request)

    async def call() -> HttpResponse:
        return await in_request_thread(run_view)

    collector = _Collector()
    r = _for_request(rule, request, in_request_thread)
    # The driver runs in the request thread's context (a `disabled()`
    # block around the request is seen by it).
    ctx = contextvars.copy_context()

    async def serve() -> None:
        # Made inside `ctx`, the task runs in a copy of it (`create_task`'s
        # `context=` is 3.11+).
        coro = _serve_on(r, rule, _asgi(call), request, view, args, kwargs, collector)
        task = ctx.run(asyncio.get_running_loop().create_task, coro)
        await task

    fut = asyncio.run_coroutine_threadsafe(serve(), loop)
    fut.add_done_callback(lambda _: jobs.put(None))
    try:
        while (job := jobs.get()) is not None:
            job()
    except BaseException:
        fut.cancel()
        raise
    fut.result()
    response = collector.response()
    if request.method in _UNSAFE and response.status_code < 400:
        _invalidate_at_commit(r, request)
    return response


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _for_request(rule: HttpRule, request: HttpRequest, in_thread: Any) -> HttpRule:
    """The rule with its user code made safe for the engine's loop:
    callable ``tags`` evaluated now (in this thread), ``key_by`` run in the
    request's thread when the engine asks (``in_thread``), or now."""
    tags = tuple(rule.tags(request)) if callable(rule.tags) else rule.tags
    key_by = rule.key_by
    if key_by is not None and not iscoroutinefunction(key_by):  # async: the engine awaits it
        original = key_by
        if in_thread is None:
            # An async view: called from a thread already (sync_to_async).
            principal = original(request)

            def key_by(_: Any) -> Any:
                return principal
        else:

            def key_by(r: Any) -> Any:
                return in_thread(lambda: original(r))

    return dataclasses.replace(rule, tags=tags, key_by=key_by)


def _invalidate_at_commit(rule: HttpRule, request: HttpRequest) -> None:
    """The engine invalidated the page when the view answered; with the
    view's writes still in a transaction (``ATOMIC_REQUESTS``), a request
    in between could store the old rows again: invalidate again when they
    commit."""
    from django.db import connections, transaction

    atomic = [c.alias for c in connections.all(initialized_only=True) if c.in_atomic_block]
    if not atomic:
        return
    ex = rule.route.exchange("GET", request.path, _query_pairs(request), _headers(request))
    tags = ex.tags()
    for alias in atomic:
        transaction.on_commit(lambda: rule.cache.invalidate_tags(tags), using=alias, robust=True)


def _as_response(request: HttpRequest, e: Exception) -> HttpResponse:
    """Django's exceptions that mean a 4xx (``Http404``,
    ``PermissionDenied``, ``BadRequest``, ``SuspiciousOperation``) as the
    response Django would send, so the engine sees a 4xx, not an error
    (stale-if-error must not answer a deleted page); others raised on."""
    from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
    from django.core.handlers.exception import response_for_exception
    from django.http import Http404

    if isinstance(e, (Http404, PermissionDenied, BadRequest, SuspiciousOperation)):
        return response_for_exception(request, e)
    raise e


def _localized() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "USE_I18N", False)) and any(
        m == "django.middleware.locale.LocaleMiddleware" for m in getattr(settings, "MIDDLEWARE", ())
    )


async def _serve_on(
    rule: HttpRule,
    declared: HttpRule,
    app: ASGIApp,
    request: HttpRequest,
    view: Callable[..., Any],
    args: Any,
    kwargs: Any,
    collector: _Collector,
) -> None:
    """`rule` for the request (its user code in the request's thread);
    a background refresh, after the request was answered, runs the view
    and `declared`'s key_by in a worker thread."""
    loop = asyncio.get_running_loop()

    async def in_worker() -> HttpResponse:
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(None, lambda: ctx.run(_in_worker_thread, view, request, args, kwargs))

    refresh = rule
    if declared.key_by is not None:
        original = declared.key_by

        async def key_by(r: Any) -> Any:
            return await loop.run_in_executor(None, lambda: original(r))

        refresh = dataclasses.replace(rule, key_by=key_by)
    entry = _entry(refresh, _asgi(in_worker), request)
    await handle(rule, app, _scope(request), _receive(request), collector.send, request, entry)


def _in_worker_thread(view: Callable[..., Any], request: HttpRequest, args: Any, kwargs: Any) -> HttpResponse:
    from django.db import close_old_connections

    close_old_connections()
    try:
        try:
            response = view(request, *args, **kwargs)
        except Exception as e:
            response = _as_response(request, e)
        return _rendered(response, request)
    finally:
        close_old_connections()


def _succeed(f: asyncio.Future[HttpResponse], r: HttpResponse) -> None:
    if not f.done():
        f.set_result(r)


def _fail(f: asyncio.Future[HttpResponse], e: BaseException) -> None:
    if not f.done():
        f.set_exception(e)


async def _serve(rule: HttpRule, app: ASGIApp, request: HttpRequest) -> HttpResponse:
    collector = _Collector()
    await handle(rule, app, _scope(request), _receive(request), collector.send, request, _entry(rule, app, request))
    return collector.response()


def _entry(rule: HttpRule, app: ASGIApp, request: HttpRequest) -> ASGIApp:
    """Where a background refresh replays the request: the engine again."""

    async def entry(scope: Scope, receive: Receive, send: Send) -> None:
        await handle(rule, app, scope, receive, send, request, entry)

    return entry


# -- Django's request and response as ASGI messages -------------------------------


def _query_string(request: HttpRequest) -> bytes:
    asgi = getattr(request, "scope", None)
    raw = asgi.get("query_string") if isinstance(asgi, dict) else None
    if isinstance(raw, bytes):
        return raw  # as sent (META holds it decoded)
    return str(request.META.get("QUERY_STRING", "")).encode("latin-1")


def _query_pairs(request: HttpRequest) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(_query_string(request).decode("latin-1"), keep_blank_values=True)


def _headers(request: HttpRequest) -> list[tuple[str, str]]:
    return [(k.lower(), str(v)) for k, v in request.headers.items()]


def _scope(request: HttpRequest) -> Scope:
    return {
        "type": "http",
        "method": request.method or "GET",
        "path": request.path,
        "query_string": _query_string(request),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in _headers(request)],
    }


def _receive(request: HttpRequest) -> Receive:
    # The view reads its request from Django, never from here: no body
    # (reading it would break uploads Django parses itself).
    body = b""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return receive


def _rendered(response: Any, request: HttpRequest) -> HttpResponse:
    """A response ready to send: a TemplateResponse rendered, a streamed
    body read (in the view's thread: it may query the database), and
    marked private when it was built from the visitor's own state."""
    if callable(getattr(response, "render", None)) and not getattr(response, "is_rendered", True):
        response = response.render()
    if getattr(response, "streaming", False):
        response._stratacache_chunks = [bytes(c) for c in response.streaming_content]
    return _privacy(response, request)


def _privacy(response: HttpResponse, request: HttpRequest) -> HttpResponse:
    """A page that used the visitor's CSRF token (a form) is never stored
    (``private, no-store``); one that used the session (the user,
    messages) is theirs (``private``: stored only for a principal
    ``key_by`` gives). Whatever the request looked like."""
    from django.utils.cache import patch_cache_control

    if request.META.get("CSRF_COOKIE_NEEDS_UPDATE") or request.META.get("CSRF_COOKIE_USED"):
        # The token is the browser's, not the user's: never stored, even
        # for a principal given by key_by.
        patch_cache_control(response, private=True, no_store=True)
        return response
    session = getattr(request, "session", None)
    if session is not None and getattr(session, "accessed", False):
        patch_cache_control(response, private=True)
    return response


async def _rendered_async(response: Any, request: HttpRequest) -> HttpResponse:
    if callable(getattr(response, "render", None)) and not getattr(response, "is_rendered", True):
        response = await sync_to_async(response.render)()  # templates may query
    if getattr(response, "streaming", False):
        content = response.streaming_content
        if hasattr(content, "__aiter__"):
            response._stratacache_chunks = [bytes(c) async for c in content]
        else:
            response._stratacache_chunks = await sync_to_async(lambda: [bytes(c) for c in content])()
    return _privacy(response, request)


def _asgi(call_view: Callable[[], Any]) -> ASGIApp:
    """An ASGI app answering with the view's response."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await call_view()
        headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in response.items()]
        for morsel in response.cookies.values():
            headers.append((b"set-cookie", morsel.output(header="").strip().encode("latin-1")))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        chunks = getattr(response, "_stratacache_chunks", None)
        if chunks is None:
            await send({"type": "http.response.body", "body": response.content})
            return
        for c in chunks:  # written in pieces: the engine passes it through
            await send({"type": "http.response.body", "body": c, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


class _Collector:
    """The engine's answer, as a Django response."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def response(self) -> HttpResponse:
        r = HttpResponse(b"".join(self.chunks), status=self.status)
        del r.headers["Content-Type"]
        for k, v in self.headers:
            name, value = k.decode("latin-1"), v.decode("latin-1")
            if name == "set-cookie":
                jar: SimpleCookie = SimpleCookie()
                jar.load(value)
                r.cookies.update(jar)
            elif name in r.headers:
                r.headers[name] = f"{r.headers[name]}, {value}"
            else:
                r.headers[name] = value
        return r
