"""`make bench-coherence`: how fast an acknowledged delete reaches the L1 of
other processes, and what a tag invalidation costs as the number of tagged
entries grows. Reports; asserts nothing.

- Propagation: a writer deletes a key that 4 observer processes hold in
  their L1; each spins on the key until its read misses. 200 rounds; p50,
  p99, max of (eviction observed - delete acknowledged), wall clock of one
  machine.
- Tag invalidation: tag 1,000 then 100,000 entries, then time
  invalidate_tags (the Redis work is one SET per tag whatever the count) and
  the first read of a tagged entry afterwards.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

from stratacache import Cache

HERE = Path(__file__).parent
URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
ROUNDS, OBSERVERS = 200, 4


def propagation() -> None:
    ns = f"coh-bench-{os.urandom(4).hex()}"
    writer = Cache(namespace=ns, serializer="json", redis_url=URL)
    ctl = redis.Redis.from_url(URL)
    c = ns + "-ctl:"
    cfg = json.dumps({"ns": ns, "redis": URL, "rounds": ROUNDS})
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "observer.py"), cfg], stdout=subprocess.PIPE, text=True)
        for _ in range(OBSERVERS)
    ]
    for i in range(ROUNDS):
        writer.set(f"k{i}", {"v": i}, 600)
        ctl.set(c + "load", i)
        while int(ctl.get(f"{c}held{i}") or 0) < OBSERVERS:
            time.sleep(0.0002)
        writer.delete(f"k{i}")
        ctl.set(f"{c}at{i}", time.time() * 1000)
        ctl.set(c + "deleted", i)
        while int(ctl.get(f"{c}seen{i}") or 0) < OBSERVERS:
            time.sleep(0.0002)
    lat = [x for p in procs for x in json.loads(p.communicate()[0].strip().splitlines()[-1])["lat"]]
    q = statistics.quantiles(lat, n=100)
    print(f"Propagation, delete -> eviction in {OBSERVERS} other processes, {ROUNDS} rounds ({len(lat)} samples):")
    print(f"  p50 {q[49]:.2f} ms   p99 {q[98]:.2f} ms   max {max(lat):.2f} ms")


def tag_cost() -> None:
    print("Tag invalidation cost vs tagged entries:")
    for n in (1_000, 100_000):
        c = Cache(namespace=f"tag-bench-{os.urandom(4).hex()}", serializer="json", redis_url=URL)
        for i in range(n):  # every entry carries the tag
            c.set(f"e{i}", i, 600, tags=["big"])
        t = time.perf_counter()
        c.invalidate_tags(["big"])
        inv = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        c.get("e0")
        first = (time.perf_counter() - t) * 1000
        print(f"  {n:>7} tagged entries: invalidate_tags {inv:.3f} ms, next read of a tagged entry {first:.3f} ms")
        c.clear()


if __name__ == "__main__":
    propagation()
    tag_cost()
