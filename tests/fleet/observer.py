"""A Python observer of the coherence test (test_coherence.py): holds two
entries in its L1, then reports how long after each acknowledged change
(a delete, a tag invalidation) its reads stopped returning the old value.

Usage: observer.py CONFIG_JSON. Prints one JSON line."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from stratacache import Cache


def main() -> None:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    where = {"redis_url": cfg["redis"]} if "redis" in cfg else {"cluster": cfg["cluster"]}
    cache = Cache(namespace=cfg["ns"], serializer="json", **where)
    ctl = Cache(namespace=cfg["ns"] + "-ctl", serializer="json", l1=False, **where)
    out: dict[str, Any] = {}
    # Hold both entries in L1 (read until a read is an L1 hit).
    for key in ("k", "tagged"):
        while True:
            before = cache.stats()["l1_hits"]
            assert cache.get(key) is not None, key
            if cache.stats()["l1_hits"] > before:
                break
    ctl.incr("ready")
    for phase, key in ((1, "k"), (2, "tagged")):
        while (ctl.get("phase") or 0) < phase:
            time.sleep(0.0005)
        changed_at = ctl.get(f"changed_at_{phase}")
        deadline = time.monotonic() + 10
        while cache.get(key) is not None:  # the old value, from L1
            if time.monotonic() > deadline:
                out[key] = None  # never evicted: the test fails on it
                break
        else:
            out[key] = time.time() * 1000 - changed_at
        ctl.incr(f"done_{phase}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
