"""make bench-invalidation: how fast a database change reaches every
process's L1 through the PostgreSQL change feed, and how many row changes
the listener sustains.

- Latency: N observer processes (Python) hold an entry tagged with a row's
  tag in L1; the bench commits an UPDATE of that row (psycopg, another
  connection, as any service would) and records the commit's
  acknowledgement time; each observer reads until its copy is gone.
  Commit -> evicted in every process: p50 / p99 / max over ROUNDS rounds.
  The listener runs as `python -m stratacache listen` (its own process),
  poll interval 20 ms (the default).
- The same with a plain event published to NATS JetStream and to
  RabbitMQ (`listen --nats` / `--amqp`), from the broker's acknowledgement
  of the publish.
- Throughput: an in-process PgListener; CHANGES rows updated in one
  transaction, then in transactions of one row each committed back to
  back; changes per second from the commit to the listener's count.

Env: ROUNDS (200), OBSERVERS (3), CHANGES (100000). Needs
STRATACACHE_PG_URL (wal_level=logical) and REDIS_URL: `make
bench-invalidation` provides both.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from stratacache import Cache
from stratacache.feed import PgListener

HERE = Path(__file__).parent
PG = os.environ["STRATACACHE_PG_URL"]
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
ROUNDS = int(os.environ.get("ROUNDS", "200"))
OBSERVERS = int(os.environ.get("OBSERVERS", "3"))
CHANGES = int(os.environ.get("CHANGES", "100000"))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


NATS = os.environ.get("STRATACACHE_NATS_URL", "nats://127.0.0.1:4222")
AMQP = os.environ.get("STRATACACHE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


def latency(db: psycopg.Connection[tuple[object, ...]], table: str, source: str = "postgres") -> None:
    """Commit (or publish) -> evicted in every observer. `source`: an
    UPDATE through the change feed, or a plain event through NATS
    JetStream or RabbitMQ (published by the broker's own Python client,
    acknowledged by the broker)."""
    ns = f"binv-{uuid.uuid4().hex[:8]}"
    writer = Cache(namespace=ns, redis_url=REDIS, serializer="json")
    ctl = Cache(namespace=ns + "-ctl", redis_url=REDIS, serializer="json", l1=False)
    for i in range(ROUNDS):
        writer.set(f"row:{i}", {"i": i}, 600, tags=[f"table:public.{table}:{i + 1}"])
        ctl.set(f"ready:{i}", 0, 600)
    cmd = [sys.executable, "-m", "stratacache", "listen", "--redis", REDIS, "--namespace", ns, "--stats-every", "0"]
    if source == "postgres":
        cmd += ["--postgres", PG, "--table", table, "--slot", table, "--publication", table]
    elif source == "nats":
        cmd += ["--nats", NATS, "--nats-stream", table.upper(), "--nats-subject", f"{table}.>", "--nats-durable", table]
    else:
        cmd += ["--amqp", AMQP, "--amqp-queue", table]
    listener = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    publish = publisher(source, table)
    assert listener.stdout is not None and listener.stdout.readline().startswith("stratacache listen:")
    cfg = json.dumps({"ns": ns, "redis": REDIS, "rounds": ROUNDS})
    obs = [
        subprocess.Popen([sys.executable, str(HERE / "observer.py"), cfg], stdout=subprocess.PIPE, text=True)
        for _ in range(OBSERVERS)
    ]
    for i in range(ROUNDS):
        while (ctl.get(f"ready:{i}") or 0) < OBSERVERS:
            assert all(p.poll() is None for p in obs), "an observer failed"
            time.sleep(0.0002)
        if source == "postgres":
            db.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (i + 1,))
        else:
            publish(json.dumps({"tags": [f"table:public.{table}:{i + 1}"]}))
        ctl.set(f"committed:{i}", time.time() * 1000, 600)
    lat: list[float] = []
    for p in obs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, "an observer failed"
        lat += json.loads(out.strip().splitlines()[-1])
    listener.send_signal(signal.SIGINT)
    listener.communicate(timeout=10)
    publish(None)
    per_round = [max(lat[r + k * ROUNDS] for k in range(OBSERVERS)) for r in range(ROUNDS)]
    what = {
        "postgres": "PostgreSQL commit (change feed, poll 20 ms)",
        "nats": "NATS JetStream publish acknowledged",
        "rabbitmq": "RabbitMQ publish confirmed",
    }[source]
    print(f"{what} -> evicted in all {OBSERVERS} processes ({ROUNDS} rounds):")
    print(
        f"  slowest process per round, ms: p50 {pct(per_round, 50):.1f}  p99 {pct(per_round, 99):.1f}  "
        f"max {max(per_round):.1f}"
    )
    print(f"  every process, ms: p50 {statistics.median(lat):.1f}  p99 {pct(lat, 99):.1f}  max {max(lat):.1f}")


def publisher(source: str, name: str) -> Callable[[str | None], None]:
    """A function publishing one event body to `source` (None: clean up)."""
    if source == "postgres":
        return lambda body: None
    if source == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(AMQP))
        ch = conn.channel()
        ch.confirm_delivery()

        def amqp(body: str | None) -> None:
            if body is None:
                for q in (name, name + ".dead"):
                    ch.queue_delete(q)
                ch.exchange_delete(name + ".dead")
                conn.close()
            else:
                ch.basic_publish("", name, body.encode())

        return amqp
    import asyncio

    import nats

    loop = asyncio.new_event_loop()
    nc = loop.run_until_complete(nats.connect(NATS))
    js = nc.jetstream()

    def publish_nats(body: str | None) -> None:
        if body is None:
            loop.run_until_complete(js.delete_stream(name.upper()))
            loop.run_until_complete(nc.close())
            loop.close()
        else:
            loop.run_until_complete(js.publish(f"{name}.events", body.encode()))

    return publish_nats


def throughput(db: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    cache = Cache(namespace=f"binv-t-{uuid.uuid4().hex[:8]}", redis_url=REDIS)
    slot = table + "_t"
    with PgListener(cache, PG, [table], slot=slot, publication=slot) as listener:
        t0 = time.perf_counter()
        db.execute(f"UPDATE {table} SET v = v + 1")
        committed = time.perf_counter()
        while listener.stats()["changes"] < CHANGES:
            time.sleep(0.001)
        done = time.perf_counter()
        print(
            f"one transaction of {CHANGES:,} row changes: commit took {committed - t0:.2f} s; "
            f"invalidated {CHANGES / (done - committed):,.0f} changes/s after it "
            f"({listener.stats()['tags_invalidated']:,} tags)"
        )
        n = min(CHANGES, 20_000)
        base = listener.stats()["changes"]
        t0 = time.perf_counter()
        with db.pipeline():
            for i in range(n):
                db.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (i + 1,))
        committed = time.perf_counter()
        while listener.stats()["changes"] < base + n:
            time.sleep(0.001)
        done = time.perf_counter()
        print(
            f"{n:,} one-row transactions committed in {committed - t0:.2f} s ({n / (committed - t0):,.0f}/s); "
            f"the listener finished {done - committed:.2f} s after the last commit: "
            f"{n / (done - t0):,.0f} changes/s end to end"
        )
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        admin.execute(f"DROP PUBLICATION {slot}")


def main() -> None:
    table = f"binv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
        db.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, {max(CHANGES, ROUNDS)}) g")
        try:
            for source in ("postgres", "nats", "rabbitmq"):
                latency(db, table, source)
            throughput(db, table)
        finally:
            db.execute(
                "SELECT pg_drop_replication_slot(%s) FROM pg_replication_slots WHERE slot_name = %s", (table, table)
            )
            db.execute(f"DROP PUBLICATION IF EXISTS {table}")
            db.execute(f"DROP TABLE {table}")


if __name__ == "__main__":
    main()
