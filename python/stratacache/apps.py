"""Optional Django app: add ``"stratacache"`` to ``INSTALLED_APPS`` to get
system checks (``manage.py check``) for every stratacache cache alias."""

from __future__ import annotations

from django.apps import AppConfig


class StrataCacheConfig(AppConfig):
    name = "stratacache"
    verbose_name = "stratacache"

    def ready(self) -> None:
        from django.core import checks

        from .django.checks import check_caches

        checks.register(check_caches, checks.Tags.caches)
