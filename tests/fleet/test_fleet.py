"""Fleet-wide stampede protection with real processes: Python processes
(threads) and Node processes (concurrent promises) on one shared Redis or
Redis Cluster. The processes meet only in Redis: the fleet lease, the value
and the pub/sub bus. Run by `make test-fleet` (part of `make test`)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from stratacache import Cache

HERE = Path(__file__).parent
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
CLUSTER = os.environ.get("STRATACACHE_CLUSTER", "")
NODE = os.environ.get("STRATACACHE_NODE", "node")
WHERE = {"redis": {"redis": REDIS_URL}, "cluster": {"cluster": CLUSTER.split(",")}}

if not CLUSTER:
    raise pytest.UsageError("STRATACACHE_CLUSTER is not set: run the tests with `make test`")


def ctl_for(where: dict[str, Any], ns: str) -> Cache:
    kw: dict[str, Any] = {"redis_url": where["redis"]} if "redis" in where else {"cluster": where["cluster"]}
    c = Cache(namespace=ns + "-ctl", serializer="json", l1=False, **kw)
    for k in ("calls", "ready"):
        c.set(k, 0, 120)
    return c


def spawn(lang: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(HERE / "worker.py")] if lang == "py" else [NODE, str(HERE / "worker.js")]
    return subprocess.Popen([*cmd, json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(ctl: Cache, n: int) -> None:
    deadline = time.monotonic() + 60
    while ctl.get("ready") < n:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)


def collect(p: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, f"worker failed ({p.returncode}): {err}"
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_cold_key_one_loader_call_for_the_whole_fleet(where: str) -> None:
    """4 Python processes x 200 threads and 2 Node processes x 500 calls."""
    ns = f"fleet-{uuid.uuid4().hex[:10]}"
    ctl = ctl_for(WHERE[where], ns)
    base = {"ns": ns, "key": "cold", "load_s": 0.2, **WHERE[where]}
    procs = [spawn("py", {**base, "name": f"py{i}", "threads": 200}) for i in range(4)]
    procs += [spawn("node", {**base, "name": f"node{i}", "calls": 500}) for i in range(2)]
    try:
        wait_ready(ctl, len(procs))
        ctl.set("go", 1, 120)
        results = [collect(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(r["errors"] == [] for r in results), [r["errors"][:3] for r in results]
    assert sum(r["n"] for r in results) == 4 * 200 + 2 * 500
    assert ctl.get("calls") == 1, "exactly one loader call in the whole fleet"
    values = {v for r in results for v in r["values"]}
    assert len(values) == 1, f"every caller got the same value: {values}"
    leads = sum(r["stats"]["leads"] for r in results)
    assert leads == 1


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_leader_crash_is_taken_over_after_the_lease_expires(where: str) -> None:
    """A Python leader is SIGKILLed mid-load; a Node process waiting on its
    lease takes over once the lease expires, well within its wait timeout."""
    ns = f"crash-{uuid.uuid4().hex[:10]}"
    ctl = ctl_for(WHERE[where], ns)
    base = {"ns": ns, "key": "k", "load_s": 0.01, **WHERE[where]}
    leader = spawn("py", {**base, "name": "doomed", "threads": 1, "hang": True, "lease_ttl": 0.5})
    try:
        wait_ready(ctl, 1)
        ctl.set("go", 1, 120)
        deadline = time.monotonic() + 30
        while ctl.get("loading") is None:  # the leader holds the lease, mid-load
            assert time.monotonic() < deadline, "the leader never started loading"
            time.sleep(0.005)
        survivor = spawn("node", {**base, "name": "survivor", "calls": 50})
        wait_ready(ctl, 2)
        leader.send_signal(signal.SIGKILL)
        leader.communicate(timeout=30)
        started = time.monotonic()
        result = collect(survivor)
        elapsed = time.monotonic() - started
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.communicate(timeout=30)
    assert result["errors"] == []
    assert result["values"] == [json.dumps({"by": "survivor", "v": "loaded"}, separators=(",", ":"))]
    assert ctl.get("calls") == 2, "the dead leader's call, then exactly one takeover"
    assert result["stats"]["lease_takeovers"] == 1 and result["stats"]["wait_timeouts"] == 0
    assert elapsed < 25, "nobody hung until the 30 s wait timeout"


@pytest.mark.parametrize("where", ["redis"])
def test_hot_key_expiring_under_load_is_refreshed_early(where: str) -> None:
    """A 1 s TTL key read continuously for 5 s by 200 threads in 2 processes
    with early refresh (refresh-ahead, the last 25 % of the TTL) and
    stale-while-revalidate as its safety net (a refresh that a busy machine
    delays past the expiry is waited for by nobody): at most one loader call
    per (early-refresh-shortened) TTL period for the whole fleet, and after
    warm-up no caller ever waits for a load."""
    ns = f"hot-{uuid.uuid4().hex[:10]}"
    ctl = ctl_for(WHERE[where], ns)
    duration, ttl = 5.0, 1.0
    base = {
        "ns": ns,
        "key": "hot",
        "load_s": 0.005,
        "mode": "hot",
        "duration_s": duration,
        "ttl_s": ttl,
        # Deterministic refresh-ahead (XFetch's randomness is tested on its
        # own in crates/core/tests/freshness.rs).
        "beta": None,
        "refresh_ahead": 0.25,
        **WHERE[where],
    }
    procs = [spawn("py", {**base, "name": f"py{i}", "threads": 100}) for i in range(2)]
    try:
        wait_ready(ctl, len(procs))
        ctl.set("go", 1, 120)
        started = time.monotonic()
        results = [collect(p) for p in procs]
        window = time.monotonic() - started
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(r["errors"] == [] for r in results), [r["errors"][:3] for r in results]
    keys = ("leads", "early_refreshes", "load_waits", "lease_waits")
    stats = {k: sum(r["stats"][k] for r in results) for k in keys}
    # One initial load, then one refresh per TTL period for the whole fleet
    # (a period that early refresh shortens by up to its window).
    calls = ctl.get("calls")
    period = ttl * (1 - base["refresh_ahead"])  # type: ignore[operator]
    assert calls <= 1 + math.ceil(window / period), f"{calls} loader calls in {window:.2f} s with a {ttl} s TTL"
    assert stats["leads"] <= calls, f"every load after warm-up was a background refresh: {stats}"
    # Every non-zero counter of each process, so a failure says which path the waiters took.
    detail = [{k: v for k, v in r["stats"].items() if v} for r in results]
    assert stats["load_waits"] == 0 and stats["lease_waits"] == 0, f"a caller waited for a load: {stats} {detail}"
