"""FastAPI integration through its TestClient: response caching with HTTP
semantics, coalescing, per-user keys, and the dependency."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Annotated

import pytest
from fastapi import BackgroundTasks, Cookie, Depends, FastAPI, Header, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from fastapi.testclient import TestClient

import stratacache
from conftest import REDIS_URL, unique
from stratacache import Cache
from stratacache.fastapi import cached, get_cache, setup

CONFIGS = {"l1": {}, "redis": {"redis_url": REDIS_URL}}


@pytest.fixture(params=list(CONFIGS))
def app_and_calls(request: pytest.FixtureRequest) -> tuple[FastAPI, Counter[str], Cache]:
    cache = Cache(namespace=unique("fa"), op_timeout=5.0, **CONFIGS[request.param])  # type: ignore[arg-type]
    calls: Counter[str] = Counter()
    app = FastAPI()
    setup(app, cache)
    gate = threading.Event()
    app.state.gate = gate

    @app.get("/items/{item_id}")
    @cached(ttl=60)
    async def item(item_id: int, q: str = "") -> dict[str, object]:
        calls["item"] += 1
        return {"id": item_id, "q": q}

    @app.get("/sync")
    @cached(ttl=60)
    def sync_endpoint() -> dict[str, int]:
        calls["sync"] += 1
        return {"n": calls["sync"]}

    @app.get("/slow")
    @cached(ttl=60)
    def slow() -> dict[str, str]:
        calls["slow"] += 1
        gate.wait(5)
        return {"v": "slow"}

    @app.get("/nostore")
    @cached(ttl=60)
    async def nostore() -> JSONResponse:
        calls["nostore"] += 1
        return JSONResponse({"n": calls["nostore"]}, headers={"cache-control": "no-store"})

    @app.get("/cookie")
    @cached(ttl=60)
    async def cookie() -> JSONResponse:
        calls["cookie"] += 1
        r = JSONResponse({"n": calls["cookie"]})
        r.set_cookie("sid", "secret")
        return r

    @app.get("/missing")
    @cached(ttl=60)
    async def missing() -> JSONResponse:
        calls["missing"] += 1
        return JSONResponse({"detail": "nope"}, status_code=404)

    @app.get("/me")
    @cached(ttl=60, key_by=lambda r: r.headers.get("authorization", ""))
    async def me(request: Request) -> dict[str, str]:
        calls["me"] += 1
        return {"user": request.headers.get("authorization", "")}

    @app.get("/shared")
    @cached(ttl=60, vary=["accept-language"])
    async def shared(request: Request) -> PlainTextResponse:
        calls["shared"] += 1
        return PlainTextResponse(f"lang={request.headers.get('accept-language', '')}")

    @app.get("/swr")
    @cached(ttl=1, stale_while_revalidate=60)
    async def swr() -> dict[str, int]:
        calls["swr"] += 1
        return {"n": calls["swr"]}

    @app.post("/items/{item_id}")
    async def update(item_id: int, c: Annotated[Cache, Depends(get_cache)]) -> dict[str, bool]:
        return {"same_cache": c is cache}

    return app, calls, cache


def test_hit_miss_etag_and_headers(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, calls, _ = app_and_calls
    client = TestClient(app)
    r1 = client.get("/items/1", params={"q": "x"})
    assert r1.status_code == 200 and r1.json() == {"id": 1, "q": "x"}
    assert r1.headers["x-cache"] == "MISS"
    r2 = client.get("/items/1", params={"q": "x"})
    assert r2.headers["x-cache"] == "HIT" and r2.json() == r1.json()
    assert calls["item"] == 1
    etag = r1.headers["etag"]
    assert etag == r2.headers["etag"] and etag.startswith('"')
    assert "public" in r2.headers["cache-control"] and "max-age=" in r2.headers["cache-control"]
    r304 = client.get("/items/1", params={"q": "x"}, headers={"if-none-match": etag})
    assert r304.status_code == 304 and r304.content == b"" and r304.headers["etag"] == etag
    assert client.get("/items/1", params={"q": "y"}).headers["x-cache"] == "MISS", "query is part of the key"
    assert client.get("/items/2").json()["id"] == 2
    assert calls["item"] == 3
    # Validation still works: the signature FastAPI sees is the endpoint's.
    assert client.get("/items/not-a-number").status_code == 422


def test_etag_is_stable_across_processes(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    import hashlib

    app, _, _ = app_and_calls
    r = TestClient(app).get("/items/7")
    # The body's SHA-256 prefix: what every worker, and the Node middleware, computes.
    assert r.headers["etag"] == '"' + hashlib.sha256(r.content).hexdigest()[:32] + '"'


def test_sync_endpoints_and_coalescing(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, calls, _ = app_and_calls
    client = TestClient(app)
    assert client.get("/sync").json() == {"n": 1}
    assert client.get("/sync").json() == {"n": 1}
    # Concurrent misses of one URL run the endpoint once.
    results: list[int] = []
    barrier = threading.Barrier(20)

    def hit() -> None:
        barrier.wait()
        results.append(client.get("/slow").status_code)

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while calls["slow"] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    app.state.gate.set()
    for t in threads:
        t.join()
    assert results == [200] * 20
    assert calls["slow"] == 1


def test_uncacheable_responses_are_not_stored(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, calls, _ = app_and_calls
    client = TestClient(app)
    for path in ("/nostore", "/cookie", "/missing"):
        a, b = client.get(path), client.get(path)
        assert a.headers["x-cache"] == "BYPASS" and b.headers["x-cache"] == "BYPASS"
    assert calls["nostore"] == 2 and calls["cookie"] == 2 and calls["missing"] == 2
    assert client.get("/missing").status_code == 404


def test_client_cache_control_cannot_run_the_handler(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, calls, _ = app_and_calls
    client = TestClient(app)
    client.get("/items/5")
    assert client.get("/items/5", headers={"cache-control": "no-store"}).headers["x-cache"] == "HIT"
    assert client.get("/items/5", headers={"cache-control": "no-cache"}).headers["x-cache"] == "HIT"
    assert calls["item"] == 1


def test_credentials_are_never_served_a_shared_entry(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, calls, _ = app_and_calls
    client = TestClient(app)
    client.get("/items/9")
    r = client.get("/items/9", headers={"authorization": "Bearer alice"})
    assert r.headers["x-cache"] == "BYPASS"
    with TestClient(app, cookies={"sessionid": "abc"}) as logged_in:
        assert logged_in.get("/items/9").headers["x-cache"] == "BYPASS"
    # A route keyed by principal: private entries, one per user.
    alice = client.get("/me", headers={"authorization": "alice"})
    bob = client.get("/me", headers={"authorization": "bob"})
    assert alice.json() == {"user": "alice"} and bob.json() == {"user": "bob"}
    again = client.get("/me", headers={"authorization": "alice"})
    assert again.json() == {"user": "alice"} and again.headers["x-cache"] == "HIT"
    assert "private" in again.headers["cache-control"]
    assert calls["me"] == 2


def test_vary_headers_split_entries(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, calls, _ = app_and_calls
    client = TestClient(app)
    fr = client.get("/shared", headers={"accept-language": "fr"})
    de = client.get("/shared", headers={"accept-language": "de"})
    assert fr.text == "lang=fr" and de.text == "lang=de"
    assert client.get("/shared", headers={"accept-language": "fr"}).headers["x-cache"] == "HIT"
    assert fr.headers["vary"] == "accept-language"
    assert calls["shared"] == 2


def test_stale_while_revalidate(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, calls, _ = app_and_calls
    # One event loop for every request (the refresh runs in the background
    # of the app's loop; a TestClient without `with` closes it per request).
    with TestClient(app) as client:
        _stale_while_revalidate(client, calls)


def _stale_while_revalidate(client: TestClient, calls: Counter[str]) -> None:
    first = client.get("/swr")
    assert first.json() == {"n": 1}
    assert "stale-while-revalidate=60" in first.headers["cache-control"]
    time.sleep(1.1)  # past the 1 s TTL: the entry is stale but within grace
    # Served at once, stale; this request's lease refreshes in the background.
    stale = client.get("/swr")
    assert stale.json() == {"n": 1} and stale.headers["x-cache"] == "STALE"
    deadline = time.monotonic() + 10
    while True:  # until the one background refresh has landed
        r = client.get("/swr")
        if r.headers["x-cache"] == "HIT":
            break
        assert r.json() == {"n": 1} and r.headers["x-cache"] == "STALE", "stale until refreshed"
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.01)
    assert r.json() == {"n": 2}
    assert calls["swr"] == 2, "exactly one refresh"


def test_dependency_and_other_methods(app_and_calls: tuple[FastAPI, Counter[str], Cache]) -> None:
    app, _, _ = app_and_calls
    client = TestClient(app)
    assert client.post("/items/1").json() == {"same_cache": True}


def test_a_route_reading_credentials_without_key_by_is_refused_at_startup() -> None:
    from fastapi.security import APIKeyHeader

    from stratacache import ConfigError

    app = FastAPI()
    setup(app, Cache(namespace=unique("fa-refuse")))
    scheme = APIKeyHeader(name="x-api-key")

    @app.get("/secret")
    @cached(ttl=60)
    async def secret(key: str = Depends(scheme)) -> dict[str, str]:  # a local: not in an annotation
        return {"key": key}

    # Startup fails with the reason (uvicorn then exits).
    sent: list[dict[str, object]] = []
    messages = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, object]:
        return messages.pop()

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "security scheme APIKeyHeader" in str(sent[0]["message"]) and "/secret" in str(sent[0]["message"])
    # Without the lifespan (a TestClient outside `with`): refused at the route's first request.
    with pytest.raises(ConfigError, match="/secret"):
        TestClient(app).get("/secret", headers={"x-api-key": "k"})


def _refusal_app(kind: str, **opts: object) -> FastAPI:
    """An app with one @cached route whose dependencies read `kind`."""
    app = FastAPI()
    setup(app, Cache(namespace=unique("fa-refuse")))
    if kind == "security":

        @app.get("/r")
        @cached(ttl=60, **opts)  # type: ignore[arg-type]
        async def r1(token: object = Security(HTTPBearer(auto_error=False))) -> dict[str, str]:
            return {"ok": "1"}

    elif kind == "header":

        @app.get("/r")
        @cached(ttl=60, **opts)  # type: ignore[arg-type]
        async def r2(x_tenant: Annotated[str | None, Header()] = None) -> dict[str, str | None]:
            return {"tenant": x_tenant}

    else:

        @app.get("/r")
        @cached(ttl=60, shared_cookies=["theme"], **opts)  # type: ignore[arg-type]
        async def r3(theme: Annotated[str | None, Cookie()] = None) -> dict[str, str | None]:
            return {"theme": theme}

    return app


@pytest.mark.parametrize(
    ("kind", "named"),
    [("security", "security scheme HTTPBearer"), ("header", "header 'x-tenant'"), ("cookie", "shared cookie 'theme'")],
)
def test_security_header_and_cookie_dependencies_are_refused_without_key_by(kind: str, named: str) -> None:
    from stratacache import ConfigError

    with pytest.raises(ConfigError, match=f"/r .*{named}"):
        TestClient(_refusal_app(kind)).get("/r")
    # With key_by the route is accepted and cached per principal.
    ok = TestClient(_refusal_app(kind, key_by=lambda r: r.headers.get("authorization")))
    assert ok.get("/r", headers={"Authorization": "a"}).headers["x-cache"] == "MISS"
    assert ok.get("/r", headers={"Authorization": "a"}).headers["x-cache"] == "HIT"


def test_a_header_dependency_named_in_vary_is_accepted() -> None:
    client = TestClient(_refusal_app("header", vary=["X-Tenant"]))
    assert client.get("/r", headers={"X-Tenant": "a"}).json() == {"tenant": "a"}
    assert client.get("/r", headers={"X-Tenant": "b"}).json() == {"tenant": "b"}
    hit = client.get("/r", headers={"X-Tenant": "a"})
    assert (hit.headers["x-cache"], hit.json()) == ("HIT", {"tenant": "a"})


def test_key_by_must_name_a_principal() -> None:
    from stratacache.http import _principal

    assert _principal("alice") == "alice" and _principal(7) == "7" and _principal(None) is None
    for bad in ("", object(), True, 1.5):
        with pytest.raises(stratacache.InvalidValueError):
            _principal(bad)


def test_a_background_task_failing_at_once_does_not_replace_the_response() -> None:
    app = FastAPI()
    setup(app, Cache(namespace=unique("fa-bg")))
    ran: list[str] = []

    async def fail_at_once() -> None:
        ran.append("task")
        raise RuntimeError("background task failed")

    @app.get("/bg")
    @cached(ttl=60)
    async def bg(tasks: BackgroundTasks) -> dict[str, int]:
        tasks.add_task(fail_at_once)
        return {"n": 1}

    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.get("/bg")
        assert first.status_code == 200 and first.json() == {"n": 1}
        assert first.headers["x-cache"] == "MISS"
        second = client.get("/bg")
        assert second.headers["x-cache"] == "HIT" and ran == ["task"], "background tasks run on real executions only"
