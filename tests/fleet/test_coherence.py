"""Coherence across processes and languages: 3 Python and 2 Node
processes, each holding entries in its own L1; a delete and a tag
invalidation acknowledged in this process, or a row UPDATE committed in
PostgreSQL with the change feed's CLI listening, must evict every one of
those copies. Asserts eviction (each observer reads until its read no longer
returns the old value, bounded); the propagation latency is reported, and
its bound is a benchmark (`make bench-coherence`), not an assertion."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_fleet import NODE, WHERE, collect

from stratacache import Cache

HERE = Path(__file__).parent


def observer(lang: str, cfg: dict[str, object]) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(HERE / "observer.py")] if lang == "py" else [NODE, str(HERE / "observer.js")]
    return subprocess.Popen([*cmd, json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def until(pred: object, what: str) -> None:
    deadline = time.monotonic() + 60
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


class RowFeed:
    """A table in PostgreSQL and `python -m stratacache listen` on it: the
    tag of row 1 is invalidated by an UPDATE made over another connection,
    as from psql."""

    def __init__(self, ns: str, redis_url: str) -> None:
        import psycopg

        self.url = os.environ["STRATACACHE_PG_URL"]
        self.name = f"coh_{uuid.uuid4().hex[:10]}"
        self.tag = f"table:public.{self.name}:1"
        self.db = psycopg.connect(self.url, autocommit=True)
        self.db.execute(f"CREATE TABLE {self.name} (id int PRIMARY KEY, v text)")
        self.db.execute(f"INSERT INTO {self.name} VALUES (1, 'old')")
        cmd = [sys.executable, "-m", "stratacache", "listen", "--postgres", self.url, "--redis", redis_url]
        cmd += ["--namespace", ns, "--table", self.name, "--slot", self.name, "--publication", self.name]
        self.listener = subprocess.Popen([*cmd, "--stats-every", "0"], stdout=subprocess.PIPE, text=True)
        assert self.listener.stdout is not None
        assert self.listener.stdout.readline().startswith("stratacache listen:"), "the listener did not start"

    def change(self) -> None:
        self.db.execute(f"UPDATE {self.name} SET v = 'new' WHERE id = 1")

    def close(self) -> None:
        self.listener.send_signal(signal.SIGINT)
        self.listener.communicate(timeout=10)
        assert self.listener.returncode == 0
        self.db.execute("SELECT pg_drop_replication_slot(%s)", (self.name,))
        self.db.execute(f"DROP PUBLICATION {self.name}")
        self.db.execute(f"DROP TABLE {self.name}")
        self.db.close()


@pytest.mark.parametrize(
    ("where", "tag_change"), [("redis", "invalidate_tags"), ("cluster", "invalidate_tags"), ("redis", "postgres")]
)
def test_delete_and_tag_invalidation_reach_every_process(where: str, tag_change: str) -> None:
    ns = f"coh-{uuid.uuid4().hex[:10]}"
    w = WHERE[where]
    kw: dict[str, object] = {"redis_url": w["redis"]} if "redis" in w else {"cluster": w["cluster"]}
    writer = Cache(namespace=ns, serializer="json", **kw)  # type: ignore[arg-type]
    ctl = Cache(namespace=ns + "-ctl", serializer="json", l1=False, **kw)  # type: ignore[arg-type]
    for k in ("ready", "done_1", "done_2", "phase"):
        ctl.set(k, 0, 120)
    feed = RowFeed(ns, str(w["redis"])) if tag_change == "postgres" else None
    tag = feed.tag if feed else "group"
    writer.set("k", {"v": "old"}, 120)
    writer.set("tagged", {"v": "old"}, 120, tags=[tag])
    procs = [observer("py", {"ns": ns, **w}) for _ in range(3)] + [observer("node", {"ns": ns, **w}) for _ in range(2)]
    try:
        until(lambda: ctl.get("ready") == len(procs), "observers hold both entries in L1")
        writer.delete("k")
        ctl.set("changed_at_1", time.time() * 1000, 120)
        ctl.incr("phase")
        until(lambda: ctl.get("done_1") == len(procs), "every observer saw the delete")
        # The tag changes: invalidated here, or by a committed UPDATE the
        # change feed turns into the row's tag (acknowledged at commit).
        if feed:
            feed.change()
        else:
            writer.invalidate_tags([tag])
        ctl.set("changed_at_2", time.time() * 1000, 120)
        ctl.incr("phase")
        results = [collect(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        if feed:
            feed.close()
    for key in ("k", "tagged"):
        lat = [r[key] for r in results]
        assert all(x is not None for x in lat), f"{key}: a process kept serving its old L1 copy: {lat}"
        print(
            f"{where} {tag_change} {key}: eviction after the acknowledged change, ms: max {max(lat):.2f}, "
            f"median {statistics.median(lat):.2f}"
        )
