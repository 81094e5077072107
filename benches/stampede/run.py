"""`make bench-stampede`: the two stampede scenarios of docs/benchmarks.md,
side by side for stratacache and its peers, each as a small fleet of real
processes on one Redis. Not a test: it reports, it asserts nothing.

- cold: 4 processes x 50 callers ask for one missing key at the same moment;
  the loader takes 50 ms. Reported: loader calls for the whole fleet, and
  the callers' latency.
- hot: 4 processes x 50 callers read one key with a 1 s TTL continuously
  (1 ms of other work between reads) for 5 s; the loader takes 50 ms.
  Reported: loader calls after warm-up, per TTL period, and the latency of
  every read.

Python contenders use the Django cache API (threads) or cashews (asyncio);
Node contenders their getOrSet/wrap (concurrent promises).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).parent
URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
PROCS, CALLERS, LOAD_S, TTL_S, DURATION_S = 4, 50, 0.05, 1.0, 5.0

CONTENDERS = [
    ("py", "django RedisCache"),
    ("py", "django-redis"),
    ("py", "cashews lock"),
    ("py", "cashews early"),
    ("py", "stratacache"),
    ("node", "cache-manager"),
    ("node", "bentocache"),
    ("node", "stratacache"),
]


def run_one(lang: str, lib: str, scenario: str) -> dict[str, Any]:
    r = redis.Redis.from_url(URL)
    run = f"stampede-{os.urandom(4).hex()}"
    cfg = {
        "redis": URL,
        "run": run,
        "lib": lib,
        "scenario": scenario,
        "callers": CALLERS,
        "load_s": LOAD_S,
        "ttl_s": 60.0 if scenario == "cold" else TTL_S,
        "duration_s": DURATION_S,
    }
    cmd = [sys.executable, str(HERE / "py_worker.py")] if lang == "py" else ["node", str(HERE / "node_worker.js")]
    procs = [
        subprocess.Popen([*cmd, json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCS)
    ]
    try:
        deadline = time.monotonic() + 60
        while int(r.get(f"{run}:ready") or 0) < PROCS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                errs = [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
                raise RuntimeError(f"{lib}: workers did not start: {errs}")
            time.sleep(0.01)
        warm_calls = int(r.get(f"{run}:calls") or 0)
        r.set(f"{run}:go", 1)
        lat: list[float] = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"{lib}: worker failed: {err[-2000:]}")
            lat.extend(json.loads(out.strip().splitlines()[-1])["lat"])
        calls = int(r.get(f"{run}:calls") or 0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return {
        "calls": calls if scenario == "cold" else calls - warm_calls,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": max(lat) * 1000,
        "reads": len(lat),
    }


def main() -> None:
    only = set(sys.argv[1:])
    rows: dict[str, list[tuple[str, dict[str, Any]]]] = {"cold": [], "hot": []}
    for lang, lib in CONTENDERS:
        name = f"{lib} ({'Python' if lang == 'py' else 'Node'})"
        if only and not any(o in name for o in only):
            continue
        for scenario in ("cold", "hot"):
            res = run_one(lang, lib, scenario)
            rows[scenario].append((name, res))
            print(f"{scenario:4} {name:32} {json.dumps(res)}", flush=True)
    print()
    print(f"Cold key: {PROCS} processes x {CALLERS} callers, {int(LOAD_S * 1000)} ms loader")
    print()
    print("| contender | loader calls | p50 | p99 |")
    print("|---|---:|---:|---:|")
    for name, res in rows["cold"]:
        print(f"| {name} | {res['calls']} | {res['p50_ms']:.1f} ms | {res['p99_ms']:.1f} ms |")
    print()
    periods = DURATION_S / TTL_S
    print(f"Hot key, {TTL_S:g} s TTL, {PROCS} x {CALLERS} callers for {DURATION_S:g} s, {int(LOAD_S * 1000)} ms loader")
    print()
    print("| contender | loader calls | per TTL period | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, res in rows["hot"]:
        print(
            f"| {name} | {res['calls']} | {res['calls'] / periods:.1f} | {res['p50_ms']:.2f} ms "
            f"| {res['p99_ms']:.2f} ms | {res['max_ms']:.0f} ms |"
        )


if __name__ == "__main__":
    main()
