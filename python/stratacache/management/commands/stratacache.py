"""``python manage.py stratacache VERB``: the verbs of ``python -m
stratacache`` on a cache from ``CACHES`` (``--cache``, default
``default``; it must be a stratacache backend)::

    python manage.py stratacache doctor
    python manage.py stratacache stats | get KEY | delete KEY | invalidate-tags TAG... | clear [--yes]
    python manage.py stratacache warm myapp.cache.warm   # calls warm(cache) with the Django backend
    python manage.py stratacache listen --postgres postgresql://app@db/shop --table shop_book

``get`` and ``delete`` take the key as the application passes it to
``cache.get``: the backend's ``KEY_PREFIX``, ``VERSION`` and
``KEY_FUNCTION`` apply. Needs ``"stratacache"`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...__main__ import add_listen_arguments, listen
from ..._cli import add_verb_parsers, run_verb
from ...django.backend import StrataCache


class _WithCache:
    """Subparsers that all take ``--cache``."""

    def __init__(self, sub: Any) -> None:
        self._sub = sub

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self._sub.add_parser(name, **kw)
        p.add_argument("--cache", default="default", help="the CACHES alias (default: default)")
        return p


class Command(BaseCommand):
    help = "stratacache tools: doctor, stats, get, delete, invalidate-tags, clear, warm, listen"

    def add_arguments(self, parser: CommandParser) -> None:
        sub = _WithCache(parser.add_subparsers(dest="verb", required=True))
        add_verb_parsers(sub)
        ls = sub.add_parser("listen", help="run the change feed / broker listeners until interrupted")
        add_listen_arguments(ls)

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["cache"]
        try:
            backend = caches[alias]
        except Exception as e:
            raise CommandError(f"no cache {alias!r} in CACHES ({e})") from e
        if not isinstance(backend, StrataCache):
            raise CommandError(f"CACHES[{alias!r}] is {type(backend).__name__}, not stratacache.django.StrataCache")
        ns = argparse.Namespace(**options)
        if options["verb"] == "listen":
            code = listen(backend._c, ns)
            if code:
                raise CommandError("listen: the configuration was refused (see above)", returncode=code)
            return
        # An operator's command reports Redis trouble instead of answering
        # "not cached" / "cleared" as IGNORE_EXCEPTIONS would: this
        # one-shot process turns fail-open off on its backend.
        backend._fail_open = False
        backend._c._fail_open = False
        where = f"CACHES[{alias!r}] (namespace {backend._c.namespace!r})"
        code = run_verb(ns, backend._c, backend, where, self.stdout, self.stderr)
        if code:
            raise SystemExit(code)
