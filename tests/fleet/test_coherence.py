"""Coherence across processes and languages: 3 Python and 2 Node
processes, each holding entries in its own L1; a delete and a tag
invalidation acknowledged in this process must evict every one of those
copies. Asserts eviction (each observer reads until its read no longer
returns the old value, bounded); the propagation latency is reported, and
its bound is a benchmark (`make bench-coherence`), not an assertion."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_delete_and_tag_invalidation_reach_every_process(where: str) -> None:
    ns = f"coh-{uuid.uuid4().hex[:10]}"
    w = WHERE[where]
    kw: dict[str, object] = {"redis_url": w["redis"]} if "redis" in w else {"cluster": w["cluster"]}
    writer = Cache(namespace=ns, serializer="json", **kw)  # type: ignore[arg-type]
    ctl = Cache(namespace=ns + "-ctl", serializer="json", l1=False, **kw)  # type: ignore[arg-type]
    for k in ("ready", "done_1", "done_2", "phase"):
        ctl.set(k, 0, 120)
    writer.set("k", {"v": "old"}, 120)
    writer.set("tagged", {"v": "old"}, 120, tags=["group"])
    procs = [observer("py", {"ns": ns, **w}) for _ in range(3)] + [observer("node", {"ns": ns, **w}) for _ in range(2)]
    try:
        until(lambda: ctl.get("ready") == len(procs), "observers hold both entries in L1")
        writer.delete("k")
        ctl.set("changed_at_1", time.time() * 1000, 120)
        ctl.incr("phase")
        until(lambda: ctl.get("done_1") == len(procs), "every observer saw the delete")
        writer.invalidate_tags(["group"])
        ctl.set("changed_at_2", time.time() * 1000, 120)
        ctl.incr("phase")
        results = [collect(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for key in ("k", "tagged"):
        lat = [r[key] for r in results]
        assert all(x is not None for x in lat), f"{key}: a process kept serving its old L1 copy: {lat}"
        print(
            f"{where} {key}: eviction after the acknowledged change, ms: max {max(lat):.2f}, "
            f"median {statistics.median(lat):.2f}"
        )
