"""stratacache.feed.PgListener and ``python -m stratacache listen``
against a real PostgreSQL (wal_level=logical, ``STRATACACHE_PG_URL`` from
scripts/with-postgres.sh) and Redis. The feed's semantics are the core's
(crates/core/tests/feed.rs); this checks what Python adds: arguments,
errors, stats, the CLI."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import REDIS_URL, unique
from stratacache import Cache, ConfigError
from stratacache.feed import EventListener, PgListener

PG_URL = os.environ.get("STRATACACHE_PG_URL", "")
if not PG_URL:
    raise pytest.UsageError("STRATACACHE_PG_URL is not set: run the tests with `make test`")


@pytest.fixture
def table() -> Iterator[tuple[str, str]]:
    """A table with rows 1-3, and a slot/publication name of its own."""
    name = f"pyfeed_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, category int)")
        db.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")  # templates over category
        db.execute(f"INSERT INTO {name} SELECT g, g % 2 FROM generate_series(1, 3) g")
    yield name, name
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (name,))
        db.execute(f"DROP PUBLICATION IF EXISTS {name}")
        db.execute(f"DROP TABLE {name}")


def update(sql: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(sql)


def until(pred: object, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def listening_process(cmd: list[str], first_line: str, cache: Cache, key: str, change: str) -> None:
    """Run a listener command until it prints `first_line`, commit `change`,
    wait until `key` is gone from `cache`, then interrupt it: exit 0."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith(first_line), line
        update(change)
        until(lambda: cache.get(key) is None, f"the listener invalidated {key}")
        p.send_signal(2)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_row_changes_invalidate_default_and_template_tags(table: tuple[str, str]) -> None:
    name, slot = table
    cache = Cache(redis_url=REDIS_URL, namespace=unique("pyfeed"))
    cache.set("row1", "one", tags=[f"table:public.{name}:1"])
    cache.set("odd", "cat", tags=["category:1"])
    cache.set("row2", "two", tags=[f"table:public.{name}:2"])
    with PgListener(cache, PG_URL, [name], slot=slot, publication=slot) as listener:
        until(lambda: listener.stats()["active"], "the listener is active")
        update(f"UPDATE {name} SET category = 5 WHERE id = 1")
        until(lambda: cache.get("row1") is None, "row 1's entry invalidated")
        until(lambda: listener.stats()["transactions"] == 1, "the transaction counted")
        assert cache.get("row2") == "two" and cache.get("odd") == "cat"
        s = listener.stats()
        assert (s["transactions"], s["changes"], s["tags_invalidated"], s["errors"]) == (1, 1, 2, 0), s
    # Stopped by the with block, which gave the fleet lease up: another
    # listener is active at once, not after the lease's 5 s.
    t0 = time.monotonic()
    with PgListener(cache, PG_URL, [name], slot=slot, publication=slot) as again:
        until(lambda: again.stats()["active"], "the next listener is active")
    assert time.monotonic() - t0 < 4.0
    # Templates instead of the default tags (the same slot: resumes there).
    with PgListener(cache, PG_URL, {name: ["category:{category}"]}, slot=slot, publication=slot):
        update(f"UPDATE {name} SET category = 1 WHERE id = 3")
        until(lambda: cache.get("odd") is None, "category 1's entry invalidated")
        assert cache.get("row2") == "two"


def test_configuration_errors_name_the_problem(table: tuple[str, str]) -> None:
    name, slot = table
    cache = Cache(namespace=unique("pyfeed-bad"))
    with pytest.raises(ConfigError, match=r'table "public\.nope" does not exist'):
        PgListener(cache, PG_URL, ["nope"], slot=slot, publication=slot)
    with pytest.raises(ConfigError, match='no column "nope"'):
        PgListener(cache, PG_URL, {name: ["x:{nope}"]}, slot=slot, publication=slot)
    with pytest.raises(ConfigError, match="cannot connect"):
        PgListener(cache, "postgresql://postgres@127.0.0.1:1/postgres", [name])
    with pytest.raises(ConfigError, match="poll_interval"):
        PgListener(cache, PG_URL, [name], slot=slot, publication=slot, poll_interval=-1)


def test_the_cli_listens_until_interrupted(table: tuple[str, str]) -> None:
    name, slot = table
    ns = unique("pyfeed-cli")
    cache = Cache(redis_url=REDIS_URL, namespace=ns)
    cache.set("row2", "two", tags=[f"table:public.{name}:2"])
    cmd = [sys.executable, "-m", "stratacache", "listen", "--postgres", PG_URL, "--redis", REDIS_URL]
    cmd += ["--namespace", ns, "--table", name, "--slot", slot, "--publication", slot, "--stats-every", "0"]
    listening_process(
        cmd, f"stratacache listen: {name} -> namespace", cache, "row2", f"UPDATE {name} SET category = 9 WHERE id = 2"
    )
    bad = subprocess.run([*cmd[:6], "--table", "nope"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and 'table "public.nope" does not exist' in bad.stderr, bad.stderr


def nats_publish(subject: str, bodies: list[str]) -> None:
    """Publish to JetStream with the NATS project's Python client."""
    import asyncio

    import nats

    async def go() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for b in bodies:
            await js.publish(subject, b.encode())
        await nc.close()

    asyncio.run(go())


def amqp_publish(queue: str, bodies: list[str]) -> None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    ch.confirm_delivery()
    for b in bodies:
        ch.basic_publish("", queue, b.encode())
    conn.close()


NATS_URL = os.environ.get("STRATACACHE_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("STRATACACHE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
DEBEZIUM = (
    '{"schema": {}, "payload": {"op": "u", "before": {"sku": "a-1"}, "after": {"sku": "a-1", "cat": 3},'
    ' "source": {"schema": "shop", "table": "items"}}}'
)


def all_counted(listener: EventListener) -> bool:
    s = listener.stats()
    return s["malformed"] == 1 and s["messages"] == 2


def test_events_from_nats_and_rabbitmq() -> None:
    from stratacache.feed import listen_nats, listen_rabbitmq

    cache = Cache(redis_url=REDIS_URL, namespace=unique("pyevents"))
    run = uuid.uuid4().hex[:8]
    rules = {"shop.items": {"key": ["sku"], "tags": ["item:{sku}", "category:{cat}"]}}
    for broker in ("nats", "rabbitmq"):
        cache.set("home", "v")
        cache.set("p1", "v", tags=["product:1"])
        cache.set("c3", "v", tags=["category:3"])
        bodies = ['{"tags": ["product:1"], "keys": ["home"]}', "{poison", DEBEZIUM]
        if broker == "nats":
            listener = listen_nats(
                cache,
                NATS_URL,
                stream=f"SCPY{run}",
                subjects=[f"scpy{run}.>"],
                durable=f"scpy{run}",
                tables=rules,  # type: ignore[dict-item]
            )
            nats_publish(f"scpy{run}.events", bodies)
        else:
            queue = f"scpy-{run}"
            listener = listen_rabbitmq(cache, AMQP_URL, queue=queue, tables=rules)  # type: ignore[arg-type]
            amqp_publish(queue, bodies)
        with listener:
            until(lambda: cache.get("home") is None and cache.get("p1") is None, f"{broker}: the plain event")
            until(lambda: cache.get("c3") is None, f"{broker}: the Debezium event's template")
            until(functools.partial(all_counted, listener), f"{broker}: all counted")
            s = listener.stats()
            # product:1; item:a-1, category:3 and, for the old row image
            # without `cat`, the table tag in its place.
            assert (s["messages"], s["keys_deleted"], s["tags_invalidated"], s["errors"]) == (2, 1, 4, 0), s
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    dead = ch.basic_get(f"scpy-{run}.dead", auto_ack=True)
    assert dead[2] == b"{poison", "dead-lettered"
    for q in (f"scpy-{run}", f"scpy-{run}.dead"):
        ch.queue_delete(q)
    ch.exchange_delete(f"scpy-{run}.dead")
    conn.close()
    with pytest.raises(ConfigError, match="cannot connect"):
        listen_rabbitmq(cache, "amqp://guest:wrong@127.0.0.1:5672/%2f")
    with pytest.raises(ConfigError, match="cannot connect"):
        listen_nats(cache, "nats://127.0.0.1:1")


DJANGO_LISTEN = """
import sys
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["stratacache"],
    SECRET_KEY="test",
    CACHES={"default": {"BACKEND": "stratacache.django.StrataCache", "LOCATION": sys.argv[1],
                        "OPTIONS": {"NAMESPACE": sys.argv[2]}}},
)
django.setup()
from django.core.management import call_command

call_command("stratacache", *sys.argv[3:])
"""


def test_the_django_management_command_listens_into_a_cache_alias(table: tuple[str, str]) -> None:
    name, slot = table
    ns = unique("pyfeed-django")
    cache = Cache(redis_url=REDIS_URL, namespace=ns)
    cache.set("row3", "three", tags=[f"table:public.{name}:3"])
    args = [
        "listen",
        "--postgres",
        PG_URL,
        "--table",
        name,
        "--slot",
        slot,
        "--publication",
        slot,
        "--stats-every",
        "0",
    ]
    listening_process(
        [sys.executable, "-c", DJANGO_LISTEN, REDIS_URL, ns, *args],
        f"stratacache listen: {name} -> namespace '{ns}'",
        cache,
        "row3",
        f"UPDATE {name} SET category = 8 WHERE id = 3",
    )
    bad = subprocess.run(
        [sys.executable, "-c", DJANGO_LISTEN, REDIS_URL, ns, "listen", "--cache", "nope", "--postgres", PG_URL],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "no cache 'nope' in CACHES" in bad.stderr, bad.stderr


def test_the_cli_reads_a_configuration_file(table: tuple[str, str], tmp_path: Path) -> None:
    name, slot = table
    ns = unique("pyfeed-config")
    cache = Cache(redis_url=REDIS_URL, namespace=ns)
    cache.set("row1", "one", tags=[f"tbl:{name}:1"])
    config = {
        "redis": REDIS_URL,
        "namespace": ns,
        "postgres": {"url": PG_URL, "tables": {name: ["tbl:" + name + ":{id}"]}, "slot": slot, "publication": slot},
    }
    (tmp_path / "listen.json").write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "stratacache", "listen", "--config", str(tmp_path / "listen.json")]
    listening_process(
        [*cmd, "--stats-every", "0"],
        f"stratacache listen: {name} -> namespace '{ns}'",
        cache,
        "row1",
        f"UPDATE {name} SET category = 4 WHERE id = 1",
    )
    (tmp_path / "bad.json").write_text('{"postgres": {"url": "u", "tables": {"t": null}, "slott": "x"}}')
    bad = subprocess.run([*cmd[:4], "--config", str(tmp_path / "bad.json")], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown field `slott`, expected one of" in bad.stderr, bad.stderr
    both = subprocess.run([*cmd, "--nats", "nats://x"], capture_output=True, text=True, timeout=30)
    assert both.returncode == 2 and "--config replaces the source flags: remove --nats" in both.stderr, both.stderr
