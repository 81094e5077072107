"""An observer process of the invalidation benchmark (run.py): for each
round, holds the round's entry in its L1, reports ready, then reads until
the entry is gone and records how long after the acknowledged commit
that was. Usage: observer.py CONFIG_JSON; prints one JSON list (ms)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from stratacache import Cache


def main() -> None:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    cache = Cache(namespace=cfg["ns"], redis_url=cfg["redis"], serializer="json")
    ctl = Cache(namespace=cfg["ns"] + "-ctl", redis_url=cfg["redis"], serializer="json", l1=False)
    out: list[float] = []
    for i in range(cfg["rounds"]):
        key = f"row:{i}"
        while True:  # held in L1: a read that is an L1 hit
            before = cache.stats()["l1_hits"]
            assert cache.get(key) is not None, key
            if cache.stats()["l1_hits"] > before:
                break
        ctl.incr(f"ready:{i}")
        committed = None
        while committed is None:
            committed = ctl.get(f"committed:{i}")
            time.sleep(0.0002)
        deadline = time.monotonic() + 10
        while cache.get(key) is not None:
            if time.monotonic() > deadline:
                raise SystemExit(f"round {i}: never evicted")
        out.append(time.time() * 1000 - committed)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
