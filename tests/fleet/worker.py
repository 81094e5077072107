"""One process of the fleet tests (see test_fleet.py): a real Python
process using the installed stratacache package against shared Redis.

Usage: worker.py CONFIG_JSON. Prints one JSON line with its results."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from stratacache import Cache


def main() -> None:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    where = {"redis_url": cfg["redis"]} if "redis" in cfg else {"cluster": cfg["cluster"]}
    cache = Cache(namespace=cfg["ns"], serializer="json", lease_ttl=cfg.get("lease_ttl", 5.0), **where)
    ctl = Cache(namespace=cfg["ns"] + "-ctl", serializer="json", l1=False, **where)
    me = cfg["name"]

    def loader() -> dict[str, Any]:
        ctl.incr("calls")
        if cfg.get("hang"):
            ctl.set("loading", me, 60)
            threading.Event().wait()  # the test kills this process mid-load
        time.sleep(cfg.get("load_s", 0.05))  # the origin's latency
        return {"v": "loaded", "by": me}

    ctl.incr("ready")
    while ctl.get("go") is None:  # start together (the parent says go)
        time.sleep(0.001)

    results: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    threads = int(cfg.get("threads", 1))
    barrier = threading.Barrier(threads)

    def cold() -> None:
        barrier.wait()
        try:
            v = cache.get_or_set(cfg["key"], loader, 60)
            with lock:
                results.append(json.dumps(v, sort_keys=True, separators=(",", ":")))
        except Exception as e:  # reported, and the test fails on it
            with lock:
                errors.append(repr(e))

    def read_hot() -> Any:
        # Early refresh, with stale-while-revalidate as its safety net.
        return cache.get_or_set(
            cfg["key"],
            loader,
            cfg["ttl_s"],
            early_refresh=cfg["beta"],
            refresh_ahead=cfg["refresh_ahead"],
            allow_stale=True,
            grace=60,
        )

    def hot() -> None:
        barrier.wait()
        end = time.monotonic() + cfg["duration_s"]
        while time.monotonic() < end:
            try:
                v = read_hot()
                if v is None:
                    raise AssertionError("no value")
                time.sleep(0.002)  # the rest of the request's work
            except Exception as e:
                with lock:
                    errors.append(repr(e))
                return

    target = hot if cfg.get("mode") == "hot" else cold
    if target is hot:  # warm-up: this process's first read (may load or wait)
        read_hot()
    before = cache.stats()
    ts = [threading.Thread(target=target) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    after = cache.stats()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    print(json.dumps({"values": sorted(set(results)), "n": len(results), "errors": errors, "stats": delta}))


if __name__ == "__main__":
    main()
