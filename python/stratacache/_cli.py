"""The operator verbs of ``python -m stratacache`` and ``python manage.py
stratacache`` (the same verbs and flags as ``npx stratacache``): ``stats``,
``get``, ``delete``, ``invalidate-tags``, ``clear``, ``warm``, ``doctor``.

What ``stats`` and ``doctor`` check and print is the core's
(``Cache.census`` / ``Cache.doctor``); this module parses flags, reaches the
cache and prints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import Cache, StrataCacheError

VERBS = ("stats", "get", "delete", "invalidate-tags", "clear", "warm", "doctor")


class Out(Protocol):
    """Where the verbs print: a text stream, or Django's ``OutputWrapper``."""

    def write(self, s: str, /) -> Any: ...


class Target(Protocol):
    """What the key verbs run on: a :class:`stratacache.Cache`, or a Django
    backend (whose key function and version then apply)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def delete(self, key: str) -> bool: ...
    def clear(self) -> None: ...
    def invalidate_tags(self, tags: Iterable[str]) -> None: ...


def add_verb_parsers(sub: Any) -> None:
    """Add the verbs to an ``add_subparsers()`` object."""
    p = sub.add_parser("stats", help="count the namespace's records in Redis (entries, tags, leases, processes)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("get", help="print a key's value")
    p.add_argument("key")
    p = sub.add_parser("delete", help="delete a key (every process's copy)")
    p.add_argument("key")
    p = sub.add_parser("invalidate-tags", help="invalidate every entry carrying any of the tags")
    p.add_argument("tags", nargs="+", metavar="TAG")
    p = sub.add_parser("clear", help="drop every entry of the namespace (asks first)")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p = sub.add_parser("warm", help="call a function of yours with the cache to fill it")
    p.add_argument("function", help="module:function or module.function, called with the cache")
    p = sub.add_parser("doctor", help="check Redis, TLS, the Cluster, clocks, signing keys and the bus")
    p.add_argument("--json", action="store_true", help="print JSON")


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _function(spec: str) -> Callable[[Any], Any]:
    module, sep, name = spec.partition(":")
    if not sep:
        module, _, name = spec.rpartition(".")
    if not module or not name:
        raise ValueError(f"{spec!r}: give module:function")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise ValueError(f"{spec!r}: {module} has no function {name!r}")
    return fn  # type: ignore[no-any-return]


_MISSING = object()


def run_verb(
    args: argparse.Namespace, core: Cache, target: Target, where: str, out: Out | None = None, err: Out | None = None
) -> int:
    """Run ``args.verb`` (0 done, 1 not found / checks failed, 2 refused).
    ``core`` answers ``stats`` and ``doctor``; ``target`` the key verbs;
    ``where`` names the cache in ``clear``'s question; ``out`` and ``err``
    are stdout and stderr unless given (Django's ``self.stdout``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    assert err is not None

    def fail(msg: str) -> None:
        err.write(f"stratacache {args.verb}: {msg}\n")

    try:
        return _run(args, core, target, where, out, fail)
    except StrataCacheError as e:
        # Redis unreachable, a bad key, ...: a message, never a trace.
        fail(f"{type(e).__name__}: {e}")
        return 1


def _run(
    args: argparse.Namespace, core: Cache, target: Target, where: str, out: Out, fail: Callable[[str], None]
) -> int:
    verb = args.verb
    if verb == "doctor":
        text, code = core._n.doctor(args.json)
        out.write(text if not args.json else text + "\n")
        return code
    if verb == "stats":
        out.write(core._n.census(args.json) + ("\n" if args.json else ""))
        return 0
    if verb == "get":
        value = target.get(args.key, _MISSING)
        if value is _MISSING:
            fail(f"{args.key!r} is not cached")
            return 1
        out.write(_show(value) + "\n")
        return 0
    if verb == "delete":
        out.write("deleted\n" if target.delete(args.key) else "not cached\n")
        return 0
    if verb == "invalidate-tags":
        target.invalidate_tags(args.tags)
        out.write(f"invalidated {len(args.tags)} tag(s)\n")
        return 0
    if verb == "clear":
        if not args.yes:
            if not sys.stdin.isatty():
                fail("not a terminal; pass --yes to clear without asking")
                return 2
            answer = input(f"Drop every entry of {where}, in every process? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                fail("left as it was")
                return 1
        target.clear()
        out.write("cleared\n")
        return 0
    if verb == "warm":
        try:
            fn = _function(args.function)
        except (ImportError, ValueError) as e:
            fail(str(e))
            return 2
        result = fn(target)
        out.write(f"warmed{f' {result} key(s)' if isinstance(result, int) else ''}\n")
        return 0
    raise AssertionError(verb)
