"""`make bench-memory`: the L1 memory soak (docs/benchmarks.md, "L1 memory
under churn"). Not a test: nothing here asserts.

Every workload writes WRITES distinct keys (default 20 M) into an L1 bounded
at 64 MiB, each write followed by a read of a recent key, and samples the
process's resident-set growth twenty times. Workloads: raw quick_cache (the
structure L1 is built on: the floor), raw moka (for comparison), the Rust
core with the system allocator and with mimalloc (as the bindings run it),
Python's plain API, Django's cache API, Node, and Node's loop against a
cache that keeps nothing (`node-control`: the process's own growth under
this workload; both measured after the loop has run 1 M turns against such
a cache, as a busy server's has, so that V8's young generation has grown
to its working size first); each with
64 B values and with sizes mixed from 64 B to 10 KiB; each under glibc's
default arenas and under MALLOC_ARENA_MAX=2. Reported per run: the highest
RSS growth over the bound, the growth over the last half of the run
(flat = 0.00), and L1's own accounting at the end; for Node also the
growth outside V8's heap and, after a full collection at the end, what
is still resident (the cache's own part is the node row's less the
node-control row's).

    python benches/memory/run.py [api ...]
    # apis: quick_cache moka rust rust-mimalloc plain django node node-control
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOUND = 64 << 20
WRITES = int(os.environ.get("WRITES", "20000000"))
EXAMPLES = ROOT / "target" / "release" / "examples"


def command(api: str, size: str) -> list[str]:
    if api in ("quick_cache", "moka", "rust"):
        return [str(EXAMPLES / "l1_memory"), api, str(WRITES), size]
    if api == "rust-mimalloc":
        return [str(EXAMPLES / "l1_memory_mimalloc"), "rust", str(WRITES), size]
    if api in ("plain", "django"):
        return [sys.executable, str(ROOT / "benches/memory/py_soak.py"), api, str(WRITES), size]
    if api == "node":
        return ["node", "--expose-gc", str(ROOT / "benches/memory/node_soak.js"), str(WRITES), size]
    if api == "node-control":
        return ["node", "--expose-gc", str(ROOT / "benches/memory/node_soak.js"), str(WRITES), size, "control"]
    raise SystemExit(f"unknown api {api!r}")


def run(api: str, size: str, arenas: str | None) -> None:
    env = dict(os.environ)
    env.pop("MALLOC_ARENA_MAX", None)
    if arenas:
        env["MALLOC_ARENA_MAX"] = arenas
    t0 = time.monotonic()
    out = subprocess.run(command(api, size), env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"| {api} | {size} | {arenas or 'default'} | failed: {out.stderr.strip()[-300:]} |", flush=True)
        return
    lines = [line for line in out.stdout.splitlines() if line.startswith("sample ")]
    samples = [tuple(int(x) for x in line.split()[1:]) for line in lines]
    ratios = [s[1] / BOUND for s in samples]
    half = ratios[len(ratios) // 2 - 1 :]
    writes, _, entries, l1_bytes = samples[-1][:4]
    # Node also reports its V8 heap's growth: RSS less that, over the bound.
    if len(samples[-1]) > 4:
        native = [(s[1] - s[4]) / BOUND for s in samples]
        print(f"| {api} | {size} | without V8's heap: max {max(native):.2f}x, last {native[-1]:.2f}x |", flush=True)
    gc = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("after-gc ")]
    if gc:
        rss, used = (int(x) for x in gc[-1])
        print(
            f"| {api} | {size} | after a full collection: RSS growth {rss / BOUND:.2f}x, "
            f"V8 heap in use {used / (1 << 20):+.1f} MiB |",
            flush=True,
        )
    print(
        f"| {api} | {size} | {arenas or 'default'} | {writes:,} | {max(ratios):.2f}x | {half[-1] - half[0]:+.2f} "
        f"| {' '.join(f'{r:.2f}' for r in ratios[3::4])} | {entries:,} | {l1_bytes / (1 << 20):.1f} MiB "
        f"| {time.monotonic() - t0:.0f} s |",
        flush=True,
    )


def main() -> None:
    apis = sys.argv[1:] or ["quick_cache", "moka", "rust", "rust-mimalloc", "plain", "django", "node", "node-control"]
    print(f"L1 bound 64 MiB, {WRITES:,} distinct writes per run, each followed by a read of a recent key\n")
    print(
        "| API | value size | glibc arenas | writes | max RSS growth / bound | last-half drift "
        "| samples at 20/40/60/80/100 % | L1 entries | L1 bytes | time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for api in apis:
        for size in ("64", "mixed"):
            for arenas in (None, "2"):
                run(api, size, arenas)


if __name__ == "__main__":
    main()
