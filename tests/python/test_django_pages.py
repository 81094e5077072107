"""``stratacache.django.cache_page``: whole pages through the HTTP engine,
with Django's test client (the WSGI handler for sync views, the ASGI
handler for async ones) on the Redis-backed alias: miss then hit, 304,
one render while others wait, tags, tracked dependencies, privacy, an
unsafe method invalidating, the edge headers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import caches
from django.test import AsyncClient, Client

import django_app
from stratacache.exceptions import ConfigError


@pytest.fixture(autouse=True)
def fresh() -> None:
    django_app.page_calls.clear()
    caches["tiered"].clear()


def calls(name: str) -> int:
    return django_app.page_calls.get(name, 0)


def test_miss_then_hit_with_validators() -> None:
    c = Client()
    first = c.get("/sc/page/?q=1")
    assert first.status_code == 200 and first["X-Cache"] == "MISS"
    again = c.get("/sc/page/?q=1")
    assert again["X-Cache"] == "HIT" and again.content == first.content
    assert calls("page") == 1
    etag = again["ETag"]
    assert c.get("/sc/page/?q=1", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert c.get("/sc/page/?q=2")["X-Cache"] == "MISS"
    assert calls("page") == 2
    # The edge headers: a shared answer carries its tags and s-maxage.
    assert "catalog" in first["Surrogate-Key"].split(" ")
    assert "s-maxage=300" in first["Cache-Control"]


def test_one_render_while_the_others_wait() -> None:
    backend = caches["tiered"]
    before = backend.stats()["load_waits"]  # type: ignore[attr-defined]
    released = threading.Event()

    def gate() -> None:
        for _ in range(1000):
            if backend.stats()["load_waits"] - before >= 5:  # type: ignore[attr-defined]
                released.set()
                return
            released.wait(0.01)
        raise AssertionError("the other requests never waited")

    django_app.page_gate = gate
    try:
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda _: Client().get("/sc/page/?q=flight").content, range(6)))
    finally:
        django_app.page_gate = None
    assert len(set(got)) == 1 and calls("page") == 1 and released.is_set()


def test_tags_dependencies_and_unsafe_methods_invalidate() -> None:
    c = Client()
    c.get("/sc/page/?q=t")
    caches["tiered"].invalidate_tags(["catalog"])  # type: ignore[attr-defined]
    assert c.get("/sc/page/?q=t")["X-Cache"] == "MISS"
    # The view reads `price` through the cache: writing it invalidates the page.
    caches["tiered"].set("price", 10)
    assert c.get("/sc/priced/").content == b"price 10"
    assert c.get("/sc/priced/")["X-Cache"] == "HIT"
    caches["tiered"].set("price", 12)
    assert c.get("/sc/priced/").content == b"price 12"
    # A successful POST to the page's URL invalidates it in every process.
    assert c.get("/sc/priced/")["X-Cache"] == "HIT"
    assert c.post("/sc/priced/").status_code == 200
    assert c.get("/sc/priced/")["X-Cache"] == "MISS"


def test_private_requests_are_not_shared() -> None:
    c = Client()
    c.get("/sc/page/?q=p")
    mine = c.get("/sc/page/?q=p", HTTP_AUTHORIZATION="Bearer alice")
    assert "X-Cache" not in mine or mine["X-Cache"] != "HIT"
    c.cookies["sessionid"] = "abc"
    assert c.get("/sc/page/?q=p")["X-Cache"] != "HIT"
    assert calls("page") == 3


@pytest.mark.parametrize("view", ["form", "hello"])
def test_a_page_built_from_the_visitors_token_or_session_is_never_shared(view: str) -> None:
    # Anonymous requests, no cookie: shareable as requests go, but the page
    # embeds a CSRF token / read the session.
    first = Client().get(f"/sc/{view}/")
    second = Client().get(f"/sc/{view}/")
    assert "private" in first["Cache-Control"]
    assert first["X-Cache"] != "HIT" and second["X-Cache"] != "HIT"
    assert calls(view) == 2


def test_key_by_caches_a_private_page_per_principal() -> None:
    c = Client()
    alice = {"HTTP_AUTHORIZATION": "Bearer a", "HTTP_X_USER": "alice"}
    first = c.get("/sc/mine/", **alice)
    assert first["X-Cache"] == "MISS"
    assert c.get("/sc/mine/", **alice).content == first.content
    bob = c.get("/sc/mine/", HTTP_AUTHORIZATION="Bearer b", HTTP_X_USER="bob")
    assert bob["X-Cache"] == "MISS" and b"bob" in bob.content
    assert calls("mine") == 2


def test_a_404_is_never_answered_with_a_stale_page() -> None:
    c = Client()
    assert c.get("/sc/gone/").status_code == 200
    caches["tiered"].invalidate_tags(["gone"])  # type: ignore[attr-defined]
    django_app.gone = True
    try:
        assert c.get("/sc/gone/").status_code == 404
    finally:
        django_app.gone = False


def test_an_upload_django_already_parsed_reaches_the_view() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    r = Client().post("/sc/upload/", {"f": SimpleUploadedFile("a.txt", b"hello")})
    assert r.status_code == 200 and r.content == b"ok"


def test_async_views_through_the_asgi_handler() -> None:
    import asyncio

    async def go() -> tuple[str, str, bytes, bytes]:
        c = AsyncClient()
        a = await c.get("/sc/apage/")
        b = await c.get("/sc/apage/")
        return a["X-Cache"], b["X-Cache"], a.content, b.content

    first, second, a, b = asyncio.run(go())
    assert (first, second) == ("MISS", "HIT") and a == b
    assert calls("apage") == 1


def test_bad_options_and_aliases() -> None:
    from stratacache.django import cache_page

    with pytest.raises(ConfigError):
        cache_page(0)
    with pytest.raises(ConfigError, match="did you mean"):
        cache_page(60, tgas=["x"])  # type: ignore[call-arg]
