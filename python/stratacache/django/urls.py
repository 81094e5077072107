"""``include("stratacache.django.urls")``: the Prometheus endpoint
(:func:`stratacache.django.views.metrics`) at the include's path."""

from __future__ import annotations

from django.urls import path

from .views import metrics

app_name = "stratacache"
urlpatterns = [path("", metrics, name="metrics")]
