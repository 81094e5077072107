"""``python manage.py stratacache listen``: the change feed and broker
listeners of ``python -m stratacache listen``, into a cache from
``CACHES`` (``--cache``, default ``default``; it must be a stratacache
backend, whose Redis and namespace the listeners use)::

    python manage.py stratacache listen --postgres postgresql://app@db/shop --table shop_book

Needs ``"stratacache"`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...__main__ import add_listen_arguments, listen
from ...django.backend import StrataCache


class Command(BaseCommand):
    help = "stratacache tools: `listen` turns database changes and broker events into invalidations"

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        ls = sub.add_parser("listen", help="run the change feed / broker listeners until interrupted")
        ls.add_argument("--cache", default="default", help="the CACHES alias to invalidate in (default: default)")
        add_listen_arguments(ls)

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["cache"]
        try:
            backend = caches[alias]
        except Exception as e:
            raise CommandError(f"no cache {alias!r} in CACHES ({e})") from e
        if not isinstance(backend, StrataCache):
            raise CommandError(f"CACHES[{alias!r}] is {type(backend).__name__}, not stratacache.django.StrataCache")
        code = listen(backend._c, argparse.Namespace(**options))
        if code:
            raise CommandError("listen: the configuration was refused (see above)", returncode=code)
