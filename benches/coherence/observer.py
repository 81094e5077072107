"""Observer process of `make bench-coherence` (see run.py): for each round,
holds the round's key in L1, then spins on it until the writer's delete
evicts it, and reports the delay from the acknowledged delete."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import redis

from stratacache import Cache


def main() -> None:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    cache = Cache(namespace=cfg["ns"], serializer="json", redis_url=cfg["redis"])
    ctl = redis.Redis.from_url(cfg["redis"])
    c = cfg["ns"] + "-ctl:"
    lat: list[float] = []
    for i in range(cfg["rounds"]):
        key = f"k{i}"
        while int(ctl.get(c + "load") or -1) < i:
            time.sleep(0.0002)
        while True:  # into L1
            before = cache.stats()["l1_hits"]
            cache.get(key)
            if cache.stats()["l1_hits"] > before:
                break
        ctl.incr(f"{c}held{i}")
        while int(ctl.get(c + "deleted") or -1) < i:
            pass
        at = float(ctl.get(f"{c}at{i}"))
        while cache.get(key) is not None:
            pass
        lat.append(time.time() * 1000 - at)
        ctl.incr(f"{c}seen{i}")
    print(json.dumps({"lat": lat}))


if __name__ == "__main__":
    main()
