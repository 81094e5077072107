"""A tiny Django app (URLconf + views) for the backend tests."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable

from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.cache import cache_page

from stratacache.django import cache_page as sc_cache_page

counter = itertools.count(1)
#: Renders of the stratacache.django.cache_page views, by name.
page_calls: Counter[str] = Counter()
#: Called inside `sc_page` while it renders (test_django_pages.py).
page_gate: Callable[[], None] | None = None


@sc_cache_page(60, cache="tiered", tags=["catalog"], edge_ttl=300, edge_tag_header="Surrogate-Key")
def sc_page(request: HttpRequest) -> HttpResponse:
    page_calls["page"] += 1
    if page_gate is not None:
        page_gate()
    return HttpResponse(f"page {request.GET.get('q')} #{next(counter)}")


@sc_cache_page(60, cache="tiered")
def sc_priced(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return HttpResponse("ok")
    return HttpResponse(f"price {caches['tiered'].get('price')}")


@sc_cache_page(60, cache="tiered")
def sc_form(request: HttpRequest) -> HttpResponse:
    from django.middleware.csrf import get_token

    page_calls["form"] += 1
    return HttpResponse(f"<input name=csrfmiddlewaretoken value={get_token(request)}>")


@sc_cache_page(60, cache="tiered")
def sc_hello(request: HttpRequest) -> HttpResponse:
    page_calls["hello"] += 1
    return HttpResponse(f"cart {request.session.get('cart', '-')}")


@sc_cache_page(60, cache="tiered", key_by=lambda r: r.headers.get("X-User"))
def sc_mine(request: HttpRequest) -> HttpResponse:
    page_calls["mine"] += 1
    return HttpResponse(f"for {request.headers.get('X-User')} #{next(counter)}")


#: sc_gone raises Http404 while True.
gone = False


@sc_cache_page(60, cache="tiered", tags=["gone"], stale_if_error=600)
def sc_gone(request: HttpRequest) -> HttpResponse:
    from django.http import Http404

    if gone:
        raise Http404("deleted")
    return HttpResponse(f"here #{next(counter)}")


def sc_upload(request: HttpRequest) -> HttpResponse:
    # As CsrfViewMiddleware does before the view: the form is parsed.
    assert "f" in request.FILES
    return sc_priced(request)


@sc_cache_page(60, cache="tiered")
async def sc_apage(request: HttpRequest) -> HttpResponse:
    page_calls["apage"] += 1
    return HttpResponse(f"async #{next(counter)}")


@cache_page(60, cache="tiered")
def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"render #{next(counter)}")


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"plain #{next(counter)}")


def session_set(request: HttpRequest) -> HttpResponse:
    request.session["cart"] = request.GET.get("item", "")
    return HttpResponse("ok")


def session_get(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.session.get("cart", "<empty>"))


urlpatterns = [
    path("page/", page),
    path("plain/", plain),
    path("session/set/", session_set),
    path("session/get/", session_get),
    path("sc/page/", sc_page),
    path("sc/priced/", sc_priced),
    path("sc/apage/", sc_apage),
    path("sc/form/", sc_form),
    path("sc/hello/", sc_hello),
    path("sc/mine/", sc_mine),
    path("sc/gone/", sc_gone),
    path("sc/upload/", sc_upload),
    path("metrics/", include("stratacache.django.urls")),
]
