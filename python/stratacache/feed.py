"""Invalidation from PostgreSQL: every committed row change in chosen
tables becomes tag invalidations, whoever made it (``psql``, another
service, a migration).

::

    from stratacache import Cache
    from stratacache.feed import PgListener

    cache = Cache(redis_url="redis://127.0.0.1:6379", namespace="shop")
    listener = PgListener(cache, "postgresql://app@127.0.0.1/shop", ["products", "public.orders"])
    cache.set("product:7", data, tags=["table:public.products:7"])
    # UPDATE products SET ... WHERE id = 7  (anywhere)  ->  the entry is gone in every process

A change to a row of ``schema.table`` invalidates ``table:schema.table``
and ``table:schema.table:<primary key>`` (a key of several columns: the
values, each with ``%`` and ``,`` percent-escaped, joined by ``,``); or,
for a table given as ``{"products": ["product:{id}", "category:{category_id}"]}``,
those templates filled from the row (a template the change cannot fill
invalidates the table tag instead). The listener reads a logical
replication slot (PostgreSQL needs ``wal_level=logical`` and a role with
``REPLICATION``), invalidates, and only then advances the slot: changes
made while no listener runs are invalidated when one starts, rolled-back
ones never. Every app process may run one: a lease in Redis keeps one
active per slot, and a standby takes over within ``lease_ttl`` when it
dies. The work runs on the core's threads, not Python's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TypedDict

from . import _native
from ._args import _check_options
from .client import Cache

__all__ = ["EventListener", "EventStats", "FeedStats", "PgListener", "TableRule", "listen_nats", "listen_rabbitmq"]


class FeedStats(TypedDict):
    """A listener's counters."""

    active: bool
    transactions: int
    changes: int
    tags_invalidated: int
    errors: int
    lag_ms: int


class PgListener:
    """A running change feed from PostgreSQL into ``cache``'s tags.

    ``tables``: names (``"products"`` means ``public.products``), or a
    mapping of names to tag templates (``None``: the default tags).
    ``slot`` and ``publication`` (created when absent; default
    ``"stratacache"``) name what the listener reads; ``poll_interval``
    (20 ms) bounds the added latency of an idle feed; ``lease_ttl`` (5 s)
    how long a dead listener holds the fleet's lease. Raises
    :class:`~stratacache.ConfigError` naming the problem (unreachable
    server, ``wal_level``, role, unknown table or column).
    """

    def __init__(
        self,
        cache: Cache,
        postgres_url: str,
        tables: Iterable[str] | Mapping[str, Sequence[str] | None],
        *,
        slot: str | None = None,
        publication: str | None = None,
        poll_interval: float | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        _check_options(poll_interval=poll_interval, lease_ttl=lease_ttl)
        if isinstance(tables, Mapping):
            spec = [(str(t), None if tags is None else [str(x) for x in tags]) for t, tags in tables.items()]
        elif isinstance(tables, str):
            spec = [(tables, None)]
        else:
            spec = [(str(t), None) for t in tables]
        self._n = _native.PgListener(
            cache._n,
            postgres_url,
            spec,
            slot=slot,
            publication=publication,
            poll_interval=poll_interval,
            lease_ttl=lease_ttl,
        )

    def stats(self) -> FeedStats:
        """Counters: ``active`` (holds the fleet lease), ``transactions``,
        ``changes``, ``tags_invalidated``, ``errors`` (recovered from),
        ``lag_ms`` (commit to invalidation of the last transaction)."""
        return self._n.stats()

    def stop(self) -> None:
        """Finish the batch in progress and give up the lease (idempotent)."""
        self._n.stop()

    def __enter__(self) -> PgListener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EventStats(TypedDict):
    """A broker listener's counters."""

    messages: int
    tags_invalidated: int
    keys_deleted: int
    malformed: int
    errors: int


class TableRule(TypedDict, total=False):
    """How a table's Debezium events map to tags: its key columns
    (default ``["id"]``) and tag templates (default: ``table:schema.table``
    and ``table:schema.table:<key>``)."""

    key: Sequence[str]
    tags: Sequence[str]


def _rules(tables: Mapping[str, TableRule] | None) -> list[tuple[str, list[str] | None, list[str] | None]]:
    out = []
    for table, rule in (tables or {}).items():
        key = rule.get("key")
        tags = rule.get("tags")
        out.append((str(table), None if key is None else list(key), None if tags is None else list(tags)))
    return out


class EventListener:
    """A running consumer of invalidation events from a message broker
    (:func:`listen_nats`, :func:`listen_rabbitmq`). A message is a plain
    ``{"tags": [...], "keys": [...]}`` or a Debezium change event (with or
    without the schema envelope); it is acknowledged only after its
    invalidation reached Redis, and a malformed one is counted and rejected
    for good (terminated on NATS, dead-lettered to ``<queue>.dead`` on
    RabbitMQ). Every listener of the fleet shares the consumer (NATS) or
    the queue (RabbitMQ): each message is handled once."""

    def __init__(self, native: _native.EventListener) -> None:
        self._n = native

    def stats(self) -> EventStats:
        """Counters: ``messages``, ``tags_invalidated``, ``keys_deleted``,
        ``malformed``, ``errors`` (recovered from)."""
        return self._n.stats()

    def stop(self) -> None:
        """Stop after the message in progress (idempotent)."""
        self._n.stop()

    def __enter__(self) -> EventListener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def listen_nats(
    cache: Cache,
    url: str,
    *,
    stream: str | None = None,
    subjects: Sequence[str] | None = None,
    durable: str | None = None,
    tables: Mapping[str, TableRule] | None = None,
) -> EventListener:
    """Consume invalidation events from NATS JetStream: the durable pull
    consumer ``durable`` (default ``stratacache``) of ``stream`` (default
    ``STRATACACHE`` on ``stratacache.>``), both created when absent."""
    return EventListener(
        _native.EventListener.nats(
            cache._n,
            url,
            stream=stream,
            subjects=None if subjects is None else list(subjects),
            durable=durable,
            tables=_rules(tables),
        )
    )


def listen_rabbitmq(
    cache: Cache,
    url: str,
    *,
    queue: str | None = None,
    bind: tuple[str, str] | None = None,
    tables: Mapping[str, TableRule] | None = None,
) -> EventListener:
    """Consume invalidation events from RabbitMQ: the durable ``queue``
    (default ``stratacache``, declared with its dead-letter exchange
    ``<queue>.dead`` when absent), bound to ``bind = (exchange,
    routing_key)`` when given."""
    return EventListener(_native.EventListener.amqp(cache._n, url, queue=queue, bind=bind, tables=_rules(tables)))
