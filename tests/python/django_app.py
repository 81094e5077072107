"""A tiny Django app (URLconf + views) for the backend tests."""

from __future__ import annotations

import itertools

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_page

counter = itertools.count(1)


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
]
