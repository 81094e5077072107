"""HTTP response caching for ASGI apps, driven by the core's engine.

Every rule (keys, privacy, what may be stored, ``Vary``, validators, the
headers sent) is the core's (``stratacache::http``), shared with the
Express and Fastify adapters; this module only does the cache I/O the
engine asks for and translates ASGI messages. The FastAPI integration
(:mod:`stratacache.fastapi`) builds on it; see docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl

from . import _native
from ._loading import Policy, current_deps
from ._logging import warn_l2
from .client import Cache
from .exceptions import InvalidValueError, RedisError
from .serializers import FORMAT_RAW

__all__ = ["REFRESH_HEADER", "HttpRule", "handle"]

log = logging.getLogger("stratacache")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KeyBy = Callable[[Any], str | Awaitable[str | None] | None]
Tags = Sequence[str] | Callable[[Any], Sequence[str]]

#: Marks the in-process request that refreshes a stale entry in the background.
REFRESH_HEADER = _native.HTTP_REFRESH_HEADER


class _NotShareable(Exception):
    """Releases coalesced requests when the leader's response may not be shared."""


@dataclass
class HttpRule:
    """A route's caching rules (validated by the core) and its callables."""

    cache: Cache
    route: _native.HttpRoute
    key_by: KeyBy | None = None
    tags: Tags = ()
    policy: Policy = field(default_factory=Policy)


@dataclass
class _Produced:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


# Background refreshes waiting for their in-process request: token -> (key, lease).
_refreshes: dict[str, tuple[str, _native.Lease]] = {}
_tasks: set[asyncio.Task[None]] = set()


#: Conditional and range request headers, kept from a leader's handler (the
#: engine answers them itself).
_CONDITIONAL = frozenset(h.encode() for h in _native.HTTP_CONDITIONAL_HEADERS)


def _principal(p: Any) -> str | None:
    """`key_by`'s answer: a non-empty str or an int, or None (the request
    then bypasses the cache); anything else is refused (an object's repr
    could key every user alike, or reuse an address)."""
    if p is None:
        return None
    if (isinstance(p, str) and p) or (isinstance(p, int) and not isinstance(p, bool)):
        return str(p)
    raise InvalidValueError(f"key_by must return a non-empty str, an int or None, not {type(p).__name__} {p!r}")


def _str_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def _raw_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _maybe_await(v: Any) -> Any:
    return await v if inspect.isawaitable(v) else v


def _query(scope: Scope) -> list[tuple[str, str]]:
    qs = scope.get("query_string", b"").decode("latin-1")
    return parse_qsl(qs, keep_blank_values=True, encoding="utf-8", errors="replace")


async def _send_answer(send: Send, answer: tuple[int, list[tuple[str, str]], bytes | None]) -> None:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": _raw_headers(headers)})
    await send({"type": "http.response.body", "body": body or b""})


def _l2_trouble(e: BaseException) -> None:
    if not isinstance(e, RedisError):
        raise e
    warn_l2("http", "HTTP cache continues without Redis", e)


async def handle(
    rule: HttpRule, app: ASGIApp, scope: Scope, receive: Receive, send: Send, request: Any, entry: ASGIApp
) -> None:
    """Answer one HTTP request through the cache: `app` produces responses,
    `request` is what `key_by` and `tags` receive (a framework request
    object), `entry` is the ASGI app whose way leads here (a background
    refresh replays the request through it)."""
    pending: tuple[str, _native.Lease] | None = None
    raw = list(scope.get("headers", []))
    token = next((v for k, v in raw if k == REFRESH_HEADER.encode()), None)
    if token is not None:
        # Only a token this process handed out means anything; never kept.
        pending = _refreshes.pop(token.decode("latin-1"), None)
        raw = [(k, v) for k, v in raw if k != REFRESH_HEADER.encode()]
        scope = {**scope, "headers": raw}
    headers = _str_headers(raw)
    ex = rule.route.exchange(scope["method"], scope["path"], _query(scope), headers)
    c = rule.cache
    if pending is None:
        # An answer from L1 in the same call, without a thread hop.
        kind, got = ex.start_local(c._h(), time.time())
        if kind == "answer":
            await _send_answer(send, got)
            return
        arg = cast("str | None", got)
    else:
        kind, arg = ex.start()
    if kind == "principal":
        assert rule.key_by is not None
        kind, arg = ex.set_principal(_principal(await _maybe_await(rule.key_by(request))))
    if kind == "unsafe":
        await _run_unsafe(rule, ex, app, scope, receive, send)
        return
    if kind == "pass":
        if pending is not None:
            pending[1].abandon(_NotShareable("refresh request bypassed the cache"))
        await app(scope, receive, _adding(send, ex.pass_headers(arg or "not-storable")))
        return
    assert arg is not None
    key: str = arg
    # Only a native lookup or a store needs them, not a hit.
    memo: list[list[str]] = []

    def tags() -> list[str]:
        if not memo:
            own = rule.tags(request) if callable(rule.tags) else rule.tags
            memo.append([*own, *ex.tags()])
        return memo[0]

    lease: _native.Lease | None = None
    if kind == "peek":
        # A HEAD: answered from an entry if there is one, never leads a flight.
        for _hop in range(2):
            try:
                hit = c._n.get_local(key) or await c._n.aget(key)
            except RedisError as e:
                _l2_trouble(e)
                hit = None
            if hit is None:
                break
            found, what = ex.on_entry(hit[1], False, time.time())
            if found == "answer":
                await _send_answer(send, what)
                return
            if found != "follow":
                break
            key = what
        await app(scope, receive, _adding(send, ex.pass_headers("head")))
        return
    if kind == "refresh":
        try:
            got = await c._n.atry_leases([key], True)
            lease = got[0] if got else None
        except RedisError as e:
            _l2_trouble(e)
    for _hop in range(2):
        if lease is not None:
            break
        if pending is not None and pending[0] == key:
            lease, pending = pending[1], None
            break
        try:
            # A fresh L1 copy answers without a thread hop (awaiting the core
            # costs a tokio -> asyncio hand-off, ~200 us on a small VM).
            local = c._n.get_local(key)
            data: bytes | None
            if local is not None:
                look, data, got_lease = _native.FRESH, local[1], None
            else:
                native_policy = rule.policy.updated(tags=tuple(tags())).native
                look, _fmt, data, got_lease, _served = await c._n.alookup(key, native_policy)
        except _NotShareable:
            await app(scope, receive, _adding(send, ex.pass_headers("not-storable")))
            return
        except RedisError as e:
            _l2_trouble(e)
            await app(scope, receive, _adding(send, ex.pass_headers("error")))
            return
        if look == _native.LEAD or data is None:
            lease = got_lease
            break
        found, what = ex.on_entry(data, look == _native.STALE, time.time())
        if found == "follow":
            if got_lease is not None:  # a stale marker: keep it, the variants are judged on their own
                await _complete(got_lease, data, rule.route, tags())
            key = what
            continue
        if found == "answer":
            if got_lease is not None:
                _refresh_in_background(entry, scope, key, got_lease)
            await _send_answer(send, what)
            return
        lease = got_lease  # unusable bytes: the handler runs and replaces them
        break
    if pending is not None:
        pending[1].abandon(_NotShareable("refresh request led elsewhere"))
    # The leader's handler produces the whole response: no 304, no 206.
    scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k not in _CONDITIONAL]}
    await _lead(rule, ex, app, scope, receive, send, key, lease, tags)


async def _complete(lease: _native.Lease, data: bytes, route: _native.HttpRoute, tags: list[str]) -> None:
    try:
        await lease.acomplete(data, FORMAT_RAW, route.ttl, route.grace, tags)
    except RedisError as e:
        _l2_trouble(e)


def _adding(send: Send, extra: list[tuple[str, str]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and extra:
            message = {**message, "headers": [*message.get("headers", []), *_raw_headers(extra)]}
        await send(message)

    return wrapped


class _Capture:
    """Runs the app and captures its response instead of sending it. A
    response written in pieces (a stream) is sent on as it goes, with
    `on_stream()`'s headers added."""

    def __init__(self, send: Send, on_stream: Callable[[], list[tuple[str, str]]]) -> None:
        self.send = send
        self.on_stream = on_stream
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.streamed = False
        self.complete = False  # the whole response was captured
        self.done = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        if self.streamed:
            await self.send(message)
            return
        if self.complete:  # the response is the cache's to send now
            return
        if message["type"] == "http.response.start":
            self.start = message
            return
        more = message.get("more_body", False)
        if message["type"] != "http.response.body" or (more and not self.chunks):
            if self.start is None:  # nothing held back yet
                await self.send(message)
                return
            # A stream, or a body sent another way (`http.response.pathsend`,
            # trailers): pass it through from here on, uncached.
            self.streamed = True
            extra = _raw_headers(self.on_stream())
            await self.send({**self.start, "headers": [*self.start.get("headers", []), *extra]})
            for chunk in self.chunks:
                await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.done.set()
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if not more:
            self.complete = True
            self.done.set()

    def produced(self) -> _Produced:
        assert self.start is not None
        return _Produced(self.start["status"], _str_headers(list(self.start.get("headers", []))), b"".join(self.chunks))


async def _run(app: ASGIApp, scope: Scope, receive: Receive, capture: _Capture) -> asyncio.Task[None]:
    """Start the app; return once its response is complete (or it ended):
    background tasks the app runs after its response keep running in the
    returned task."""

    async def run() -> None:
        try:
            await app(scope, receive, capture)
        finally:
            capture.done.set()

    task = asyncio.ensure_future(run())
    await capture.done.wait()
    if task.done() and not capture.complete and not capture.streamed:
        task.result()  # an exception raised before the response: re-raise it
    return task


async def _finish(task: asyncio.Task[None]) -> None:
    await task


async def _run_unsafe(
    rule: HttpRule, ex: _native.HttpExchange, app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    capture = _Capture(send, list)
    task = await _run(app, scope, receive, capture)
    if capture.streamed or capture.start is None:
        await _finish(task)
        return
    p = capture.produced()
    settle = ex.on_response(p.status, p.headers, b"", time.time())
    if settle.invalidate:
        try:
            await rule.cache.ainvalidate_tags(settle.invalidate)
        except RedisError as e:
            _l2_trouble(e)
    await send(capture.start)
    await send({"type": "http.response.body", "body": p.body})
    await _finish(task)


async def _lead(
    rule: HttpRule,
    ex: _native.HttpExchange,
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    key: str,
    lease: _native.Lease | None,
    tags: Callable[[], list[str]],
) -> None:
    c = rule.cache

    def release(why: str) -> None:
        nonlocal lease
        if lease is not None:
            lease.abandon(_NotShareable(why))
            lease = None

    def on_stream() -> list[tuple[str, str]]:
        release("streamed response")
        return ex.pass_headers("streamed")

    capture = _Capture(send, on_stream)
    # The handler's reads become the response's dependencies: its task
    # starts in this context (see `_run`).
    deps = _native.Deps() if c._n.tracks_dependencies else None
    token = current_deps.set(deps)
    try:
        task = await _run(app, scope, receive, capture)
    except Exception as e:
        # stale-if-error on a raised error, as on a returned 5xx.
        settle = ex.on_response(500, [], b"", time.time())
        if settle.use_stale and lease is not None and lease.fallback() is not None:
            got, lease = await lease.afail(e), None
            if got is not None:
                found, what = ex.on_entry(got[1], True, time.time())
                if found == "answer":
                    await _send_answer(send, what)
                    return
        release(str(e) or type(e).__name__)
        raise
    except BaseException as e:
        release(str(e) or type(e).__name__)
        raise
    finally:
        current_deps.reset(token)
    if capture.streamed or capture.start is None:
        release("no response")
        await _finish(task)
        return
    p = capture.produced()
    if rule.route.has_edge_tags:
        ex.set_edge_tags(tags(), deps)
    settle = ex.on_response(p.status, p.headers, p.body, time.time())
    if settle.use_stale and lease is not None and lease.fallback() is not None:
        got, lease = await lease.afail(RuntimeError(f"handler answered {p.status}")), None
        if got is not None:
            found, what = ex.on_entry(got[1], True, time.time())
            if found == "answer":
                await _send_answer(send, what)
                await _finish(task)
                return
    try:
        for k, data in settle.writes:
            await c._n.aset(k, data, FORMAT_RAW, settle.ttl, settle.grace, tags(), deps)
        if settle.complete is not None:
            if lease is not None:
                await lease.acomplete(settle.complete, FORMAT_RAW, settle.ttl, settle.grace, tags(), deps)
            else:
                await c._n.aset(key, settle.complete, FORMAT_RAW, settle.ttl, settle.grace, tags(), deps)
            lease = None
    except RedisError as e:
        _l2_trouble(e)
    release("response may not be shared")
    if settle.answer is not None:
        await _send_answer(send, settle.answer)
    else:
        extra = _raw_headers(ex.pass_headers(settle.bypass or "not-storable"))
        await send({**capture.start, "headers": [*capture.start.get("headers", []), *extra]})
        await send({"type": "http.response.body", "body": p.body})
    await _finish(task)


def _refresh_in_background(app: ASGIApp, scope: Scope, key: str, lease: _native.Lease) -> None:
    """Stale-while-revalidate: replay the request in-process with a one-time
    token; its way through the cache leads the flight with this lease."""
    token = secrets.token_hex(16)
    _refreshes[token] = (key, lease)
    headers = [(k, v) for k, v in scope.get("headers", []) if k not in _CONDITIONAL]
    headers.append((REFRESH_HEADER.encode(), token.encode()))
    replay = {**scope, "method": "GET", "headers": headers}
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the app ends on its own
        return {"type": "http.disconnect"}

    async def discard(message: Message) -> None:
        return None

    async def refresh() -> None:
        try:
            await app(replay, receive, discard)
        except Exception as e:
            log.warning("stratacache: background refresh of %s failed: %s", scope.get("path"), e)
        finally:
            # Never reached the cache (rejected before it): release the flight.
            left = _refreshes.pop(token, None)
            if left is not None:
                left[1].abandon(_NotShareable("background refresh did not run"))

    task = asyncio.get_running_loop().create_task(refresh())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
