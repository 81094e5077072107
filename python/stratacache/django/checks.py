"""The Django system check of every stratacache entry of ``settings.CACHES``
(``stratacache.E001`` / ``W001``), registered by the ``stratacache`` app."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..client import Cache
from ..exceptions import StrataCacheError
from .backend import StrataCache
from .options import cache_kwargs, options

__all__ = ["check_caches"]


def check_caches(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Django system check for every stratacache entry of ``settings.CACHES``.

    Registered by the ``stratacache`` app (add ``"stratacache"`` to
    ``INSTALLED_APPS``); runs without connecting to Redis.
    """
    from django.conf import settings
    from django.core import checks
    from django.utils.module_loading import import_string

    messages: list[Any] = []
    seen: dict[tuple[str, str], str] = {}
    for alias, config in settings.CACHES.items():
        try:
            backend = import_string(config.get("BACKEND", ""))
        except ImportError:
            continue
        if not (isinstance(backend, type) and issubclass(backend, StrataCache)):
            continue
        try:
            opts = options(config)
            kwargs_ = cache_kwargs(config.get("LOCATION", ""), opts, str(config.get("KEY_PREFIX", "") or ""))
            Cache(**kwargs_)
        except (StrataCacheError, ImproperlyConfigured, ValueError, TypeError) as e:
            messages.append(
                checks.Error(
                    f"CACHES[{alias!r}] is not a valid stratacache configuration: {e}",
                    hint="See the OPTIONS documented in stratacache.django.",
                    obj=f"CACHES[{alias!r}]",
                    id="stratacache.E001",
                )
            )
            continue
        where = (str(kwargs_.get("redis_url") or kwargs_.get("cluster") or "in-process"), kwargs_["namespace"])
        if where in seen:
            messages.append(
                checks.Warning(
                    f"CACHES[{alias!r}] and CACHES[{seen[where]!r}] use the same Redis location and NAMESPACE "
                    f"{where[1]!r}: they share entries and clear() on one clears both.",
                    hint="Give each alias its own OPTIONS['NAMESPACE'].",
                    obj=f"CACHES[{alias!r}]",
                    id="stratacache.W001",
                )
            )
        else:
            seen[where] = alias
    return messages
