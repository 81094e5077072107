"""A FastAPI app built from tests/http/cases.json's routes, for the case
table (tests/http/test_cases.py starts two, under uvicorn).

    python tests/http/app_fastapi.py PORT NAMESPACE REDIS_URL

Every route is served cached at its path and uncached at /raw<path>;
/__calls gives the handler runs, POST /__fail?on=1|0 makes the failing
routes fail. The routes use what FastAPI users write: response_model,
status_code, response_class, an injected Response, APIKeyHeader.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response, Security
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from stratacache import Cache
from stratacache.fastapi import cached, get_cache, setup

ROUTES: dict[str, dict[str, Any]] = json.loads((Path(__file__).parent / "cases.json").read_text())["routes"]
calls: Counter[str] = Counter()
failing = False


class User(BaseModel):
    id: int
    name: str


def cache_of(request: Request) -> Cache:
    return get_cache(request)


def options(spec: dict[str, Any]) -> dict[str, Any]:
    c = spec["cache"]
    o: dict[str, Any] = {"ttl": c["ttl"]}
    for k in (
        "stale_while_revalidate",
        "stale_if_error",
        "vary",
        "shared_cookies",
        "request_directives",
        "edge_ttl",
        "edge_tag_header",
    ):
        if k in c:
            o[k] = c[k]
    if "key_by" in c:
        header = c["key_by"]
        o["key_by"] = lambda r: r.headers.get(header)
    return o


def build(name: str, spec: dict[str, Any], counted: bool) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The endpoint of a route and the keyword arguments of its decorator."""
    r = spec.get("respond", {})
    route_kw: dict[str, Any] = {}
    if r.get("model"):
        route_kw["response_model"] = User
    if r.get("html"):
        route_kw["response_class"] = HTMLResponse
    if "status" in r:
        route_kw["status_code"] = r["status"]

    async def respond(request: Request, response: Response) -> Any:
        if counted and request.method != "POST":
            calls[name] += 1
        if "delay" in r:
            await asyncio.sleep(r["delay"])
        if r.get("fails") and failing:
            if r["fails"] == "raise":
                raise RuntimeError("handler failed")
            return JSONResponse({"down": True}, status_code=503)
        for k, v in r.get("headers", {}).items():
            response.headers[k] = v
        if "set_cookie" in r:
            k, _, v = r["set_cookie"].partition("=")
            response.set_cookie(k, v)
        if r.get("stream"):

            async def chunks() -> AsyncIterator[bytes]:
                for c in (b"chunk-1;", b"chunk-2;"):
                    yield c

            return StreamingResponse(chunks(), headers=dict(r.get("headers", {})))
        if r.get("html"):
            return "<p>html</p>"
        if r.get("model"):
            return {"id": 1, "name": "ada", "password_hash": "secret"}  # the model leaves it out
        echo = {h: request.headers.get(h) for h in r.get("echo", [])}
        body: dict[str, Any] = {
            "route": name,
            "query": [list(p) for p in request.query_params.multi_items()],
            "echo": echo,
        }
        if "reads" in r:  # a key read through the cache: a dependency of the response
            body["read"] = repr(await cache_of(request).aget(r["reads"]))
        if not r.get("fixed"):
            body["n"] = f"{os.getpid()}:{calls[name]}"
        return body

    header = spec.get("cache", {}).get("api_key_header")
    if header is not None:
        scheme = APIKeyHeader(name=header, auto_error=False)

        async def with_key(request: Request, response: Response, key: str | None = Security(scheme)) -> Any:
            return await respond(request, response)

        return with_key, route_kw
    return respond, route_kw


def make_app(namespace: str, redis_url: str) -> FastAPI:
    app = FastAPI()
    # The edges to purge (tests/http/test_varnish.py), as the core takes them.
    edges = os.environ.get("STRATACACHE_TEST_EDGE_PURGE")
    cache = Cache(
        namespace=namespace, redis_url=redis_url, op_timeout=5.0, edge_purge=json.loads(edges) if edges else None
    )
    setup(app, cache)

    @app.middleware("http")
    async def no_cache(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # What an app writes to let a request skip the cache.
        if request.headers.get("x-no-cache"):
            with cache.disabled():
                return await call_next(request)
        return await call_next(request)

    for name, spec in ROUTES.items():
        endpoint, route_kw = build(name, spec, True)
        app.api_route(spec["path"], methods=["GET", "HEAD", "POST"], **route_kw)(cached(**options(spec))(endpoint))
        raw, raw_kw = build(name, spec, False)
        app.api_route(f"/raw{spec['path']}", methods=["GET"], **raw_kw)(raw)

    @app.get("/__calls")
    async def get_calls() -> dict[str, int]:
        return dict(calls)

    @app.post("/__fail")
    async def set_fail(on: str) -> dict[str, bool]:
        global failing
        failing = on == "1"
        return {"failing": failing}

    return app


if __name__ == "__main__":
    port, namespace, redis_url = sys.argv[1:4]
    print("ready", flush=True)
    uvicorn.run(make_app(namespace, redis_url), host="127.0.0.1", port=int(port), log_level="warning")
