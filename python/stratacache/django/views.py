"""A Prometheus endpoint for Django::

    # urls.py
    urlpatterns = [..., path("metrics/", include("stratacache.django.urls"))]

Serves the counters and gauges of every ``StrataCache`` alias in
``CACHES`` (one sample per namespace, each metric family once), in the
Prometheus text format. Set ``STRATACACHE_METRICS_TOKEN`` in settings to
require ``Authorization: Bearer <token>``; without it the view answers
anyone who can reach it (as django-prometheus does), so route it where
only your scraper can.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse

from .. import metrics_text
from .backend import StrataCache

__all__ = ["metrics"]


def metrics(request: HttpRequest) -> HttpResponse:
    """Every StrataCache alias's metrics (see the module docs)."""
    token = getattr(settings, "STRATACACHE_METRICS_TOKEN", None)
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    backends = [caches[alias] for alias in settings.CACHES]
    ours = [b._c for b in backends if isinstance(b, StrataCache)]
    response = HttpResponse(metrics_text(*ours), content_type="text/plain; version=0.0.4; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
