"""``python -m stratacache``: command-line tools.

``listen``: run the PostgreSQL change feed until interrupted::

    python -m stratacache listen --postgres postgresql://app@127.0.0.1/shop \\
        --redis redis://127.0.0.1:6379 --namespace shop \\
        --table products --table 'categories=category:{id},catalog'
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from . import Cache, ConfigError
from .feed import PgListener


def _table(spec: str) -> tuple[str, list[str] | None]:
    name, sep, tags = spec.partition("=")
    return (name.strip(), [t.strip() for t in tags.split(",") if t.strip()] if sep else None)


def _listen(args: argparse.Namespace) -> int:
    cache = Cache(redis_url=args.redis, namespace=args.namespace)
    try:
        listener = PgListener(
            cache,
            args.postgres,
            dict(_table(t) for t in args.table),
            slot=args.slot,
            publication=args.publication,
            poll_interval=args.poll_interval,
            lease_ttl=args.lease_ttl,
        )
    except ConfigError as e:
        print(f"stratacache listen: {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"stratacache listen: {', '.join(args.table)} -> namespace {args.namespace!r}", flush=True)
    while not done.wait(args.stats_every or None):
        print(f"stratacache listen: {listener.stats()}", flush=True)
    listener.stop()
    cache.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stratacache", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("listen", help="turn PostgreSQL row changes into tag invalidations until interrupted")
    ls.add_argument("--postgres", required=True, help="PostgreSQL URL (wal_level=logical, a role with REPLICATION)")
    ls.add_argument("--table", action="append", required=True, help="TABLE or 'TABLE=TEMPLATE,...' (repeatable)")
    ls.add_argument("--redis", default=None, help="Redis URL of the fleet (omit: this process only)")
    ls.add_argument("--namespace", default="default", help="the cache namespace to invalidate in")
    ls.add_argument("--slot", default=None, help="replication slot (default stratacache)")
    ls.add_argument("--publication", default=None, help="publication (default stratacache)")
    ls.add_argument("--poll-interval", type=float, default=None, help="seconds between peeks when idle")
    ls.add_argument("--lease-ttl", type=float, default=None, help="seconds a dead listener holds the lease")
    ls.add_argument("--stats-every", type=float, default=60.0, help="print counters every N seconds (0: never)")
    args = p.parse_args(argv)
    return _listen(args)


if __name__ == "__main__":
    sys.exit(main())
