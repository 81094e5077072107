"""``python -m stratacache``: command-line tools.

``listen``: turn database changes into invalidations until interrupted,
from any of: the PostgreSQL change feed, NATS JetStream, RabbitMQ::

    python -m stratacache listen --postgres postgresql://app@127.0.0.1/shop \\
        --redis redis://127.0.0.1:6379 --namespace shop \\
        --table products --table 'categories=category:{id},catalog' \\
        --nats nats://127.0.0.1:4222 --amqp amqp://guest:guest@127.0.0.1:5672/%2f

The operator verbs, on ``--redis URL`` (or ``--cluster URL`` repeated) and
``--namespace NS``, with the signing key from ``$STRATACACHE_SIGNING_KEY``::

    python -m stratacache doctor --redis rediss://cache:6380 --namespace shop
    python -m stratacache stats | get KEY | delete KEY | invalidate-tags TAG... | clear [--yes]
    python -m stratacache warm myapp.cache:warm    # calls warm(cache)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import Cache, ConfigError, _native
from ._cli import add_verb_parsers, run_verb
from .feed import EventListener, PgListener, TableRule, listen_nats, listen_rabbitmq


def _table(spec: str) -> tuple[str, list[str] | None]:
    name, sep, tags = spec.partition("=")
    return (name.strip(), [t.strip() for t in tags.split(",") if t.strip()] if sep else None)


def _rules(args: argparse.Namespace) -> dict[str, TableRule]:
    """Debezium rules: --table templates and --key columns, by table."""
    rules: dict[str, TableRule] = {}
    for name, tags in (_table(t) for t in args.table or []):
        if tags is not None:
            rules.setdefault(name, {})["tags"] = tags
    for name, cols in (_table(k) for k in args.key or []):
        if not cols:
            raise ConfigError(f"--key {name}: give TABLE=COLUMN,... (the key columns of its Debezium events)")
        rules.setdefault(name, {})["key"] = cols
    return rules


_SOURCE_FLAGS = ("postgres", "table", "nats", "amqp", "key")


def _config(args: argparse.Namespace) -> dict[str, Any] | None:
    """`--config FILE`, read and completed by the core; None without one.
    Raises ConfigError naming what is wrong."""
    if not args.config:
        return None
    given = [f"--{f}" for f in _SOURCE_FLAGS if getattr(args, f)]
    if given:
        raise ConfigError(f"--config replaces the source flags: remove {', '.join(given)}")
    try:
        text = Path(args.config).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--config {args.config}: {e.strerror}") from None
    cfg: dict[str, Any] = json.loads(_native.listen_config(text))
    return cfg


def _listen(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args) or {}
    except ConfigError as e:
        print(f"stratacache listen: {e}", file=sys.stderr)
        return 2
    redis = args.redis or cfg.get("redis")
    namespace = args.namespace or cfg.get("namespace") or "default"
    cache = Cache(redis_url=redis, namespace=namespace)
    try:
        return listen(cache, args)
    finally:
        cache.close()


def _from_config(cache: Cache, cfg: dict[str, Any]) -> tuple[list[PgListener | EventListener], list[str]]:
    """Start the listeners a (normalized) configuration names."""
    running: list[PgListener | EventListener] = []
    sources: list[str] = []
    rules: dict[str, TableRule] = {}
    for table, key, tags in cfg["events"]:
        rule: TableRule = {}
        if key is not None:
            rule["key"] = key
        if tags is not None:
            rule["tags"] = tags
        rules[table] = rule
    try:
        if pg := cfg["postgres"]:
            running.append(
                PgListener(
                    cache,
                    pg["url"],
                    dict(pg["tables"]),
                    slot=pg["slot"],
                    publication=pg["publication"],
                    poll_interval=pg["poll_interval_ms"] / 1000,
                    lease_ttl=pg["lease_ttl_ms"] / 1000,
                )
            )
            sources.append(", ".join(t for t, _ in pg["tables"]))
        if n := cfg["nats"]:
            running.append(
                listen_nats(
                    cache, n["url"], stream=n["stream"], subjects=n["subjects"], durable=n["durable"], tables=rules
                )
            )
            sources.append("nats")
        if a := cfg["amqp"]:
            bind = (str(a["bind"][0]), str(a["bind"][1])) if a["bind"] else None
            running.append(listen_rabbitmq(cache, a["url"], queue=a["queue"], bind=bind, tables=rules))
            sources.append("rabbitmq")
    except ConfigError:
        for r in running:
            r.stop()
        raise
    return running, sources


def listen(cache: Cache, args: argparse.Namespace) -> int:
    """Run the sources `args` names (see :func:`add_listen_arguments`) into
    `cache` until SIGINT/SIGTERM; 2 on a configuration error (printed)."""
    try:
        cfg = _config(args)
        started = _from_config(cache, cfg) if cfg is not None else None
    except ConfigError as e:
        print(f"stratacache listen: {e}", file=sys.stderr)
        return 2
    if started is not None:
        return _run(cache, *started, args.stats_every)
    if not (args.postgres or args.nats or args.amqp):
        print("stratacache listen: give at least one of --postgres, --nats, --amqp", file=sys.stderr)
        return 2
    if args.postgres and not args.table:
        print("stratacache listen: --postgres needs at least one --table", file=sys.stderr)
        return 2
    running: list[PgListener | EventListener] = []
    sources: list[str] = []
    try:
        if args.postgres:
            running.append(
                PgListener(
                    cache,
                    args.postgres,
                    dict(_table(t) for t in args.table),
                    slot=args.slot,
                    publication=args.publication,
                    poll_interval=args.poll_interval,
                    lease_ttl=args.lease_ttl,
                )
            )
            sources.append(", ".join(args.table))
        if args.nats:
            running.append(
                listen_nats(
                    cache,
                    args.nats,
                    stream=args.nats_stream,
                    subjects=args.nats_subject,
                    durable=args.nats_durable,
                    tables=_rules(args),
                )
            )
            sources.append("nats")
        if args.amqp:
            bind: tuple[str, str] | None = None
            if args.amqp_bind:
                exchange, _, key = str(args.amqp_bind).partition(":")
                bind = (exchange, key)
            running.append(listen_rabbitmq(cache, args.amqp, queue=args.amqp_queue, bind=bind, tables=_rules(args)))
            sources.append("rabbitmq")
    except ConfigError as e:
        for r in running:
            r.stop()
        print(f"stratacache listen: {e}", file=sys.stderr)
        return 2
    return _run(cache, running, sources, args.stats_every)


def _run(cache: Cache, running: list[PgListener | EventListener], sources: list[str], stats_every: float) -> int:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"stratacache listen: {'; '.join(sources)} -> namespace {cache.namespace!r}", flush=True)
    while not done.wait(stats_every or None):
        print(f"stratacache listen: {[r.stats() for r in running]}", flush=True)
    for r in running:
        r.stop()
    return 0


def add_listen_arguments(ls: argparse.ArgumentParser) -> None:
    """The sources of `listen` (shared with Django's `manage.py stratacache
    listen`, which takes the cache from settings instead of --redis and
    --namespace)."""
    ls.add_argument("--config", help="a JSON file naming the sources (and redis, namespace) instead of flags")
    ls.add_argument("--postgres", help="PostgreSQL URL (wal_level=logical, a role with REPLICATION)")
    ls.add_argument("--table", action="append", help="TABLE or 'TABLE=TEMPLATE,...' (repeatable)")
    ls.add_argument("--slot", default=None, help="replication slot (default stratacache)")
    ls.add_argument("--publication", default=None, help="publication (default stratacache)")
    ls.add_argument("--poll-interval", type=float, default=None, help="seconds between peeks when idle")
    ls.add_argument("--lease-ttl", type=float, default=None, help="seconds a dead listener holds the lease")
    ls.add_argument("--nats", help="NATS URL: consume invalidation events from JetStream")
    ls.add_argument("--nats-stream", help="JetStream stream (default STRATACACHE)")
    ls.add_argument("--nats-subject", action="append", help="subjects of the stream (default stratacache.>)")
    ls.add_argument("--nats-durable", help="durable consumer (default stratacache)")
    ls.add_argument("--amqp", help="RabbitMQ URL: consume invalidation events from a queue")
    ls.add_argument("--amqp-queue", help="queue (default stratacache)")
    ls.add_argument("--amqp-bind", help="EXCHANGE:ROUTING_KEY to bind the queue to")
    ls.add_argument("--key", action="append", help="'TABLE=COLUMN,...': key columns of a table's Debezium events")
    ls.add_argument("--stats-every", type=float, default=60.0, help="print counters every N seconds (0: never)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stratacache", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("listen", help="turn PostgreSQL row changes into tag invalidations until interrupted")
    ls.add_argument("--redis", default=None, help="Redis URL of the fleet (omit: this process only)")
    ls.add_argument("--namespace", default=None, help="the cache namespace to invalidate in (default: default)")
    add_listen_arguments(ls)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--redis", default=None, help="Redis URL (omit: an empty in-process cache)")
    where.add_argument("--cluster", action="append", default=None, help="a Redis Cluster seed URL (repeatable)")
    where.add_argument("--namespace", default="default", help="the cache namespace (default: default)")
    where.add_argument(
        "--serializer",
        default="json",
        choices=["json", "msgpack", "pickle"],
        help="how `get` decodes values (default json; pickle needs $STRATACACHE_SIGNING_KEY)",
    )
    add_verb_parsers(_WithParent(sub, where))
    args = p.parse_args(argv)
    if args.command == "listen":
        return _listen(args)
    args.verb = args.command
    key = os.environ.get("STRATACACHE_SIGNING_KEY") or None
    if args.serializer == "pickle" and key is None:
        # Unpickling runs code: only entries signed with the fleet's key.
        print(
            "stratacache: --serializer pickle needs $STRATACACHE_SIGNING_KEY (unsigned pickles run code)",
            file=sys.stderr,
        )
        return 2
    try:
        cache = Cache(
            redis_url=args.redis,
            cluster=args.cluster,
            namespace=args.namespace,
            signing_key=key,
            serializer=args.serializer,
        )
    except ConfigError as e:
        print(f"stratacache {args.command}: {e}", file=sys.stderr)
        return 2
    try:
        shown = args.redis or ",".join(args.cluster or []) or "this process"
        return run_verb(args, cache, cache, f"namespace {args.namespace!r} on {_native.redacted_url(shown)}")
    finally:
        cache.close()


class _WithParent:
    """An ``add_subparsers()`` object whose parsers all take ``parent``'s flags."""

    def __init__(self, sub: Any, parent: argparse.ArgumentParser) -> None:
        self._sub, self._parent = sub, parent

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        return self._sub.add_parser(name, parents=[self._parent], **kw)  # type: ignore[no-any-return]


if __name__ == "__main__":
    sys.exit(main())
