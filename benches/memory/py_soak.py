"""The L1 memory soak's Python workloads (run by run.py; protocol in
crates/core/examples/l1_memory.rs): `py_soak.py plain|django <writes> <size>`.

`plain` is `stratacache.Cache` (L1 only, 64 MiB bound, defaults otherwise);
`django` is the same cache behind Django's cache API. Values are `str`s of
the given size (pickled, as users' values are). Prints
`sample <writes done> <RSS growth bytes> <L1 entries> <L1 bytes>` twenty times.
"""

from __future__ import annotations

import math
import sys
from typing import Any

BOUND = 64 << 20
SAMPLES = 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def size_of(fixed: int | None, i: int) -> int:
    if fixed is not None:
        return fixed
    return int(64.0 * 160.0 ** math.modf(i * 0.6180339887498949)[0])


def main() -> None:
    api, writes, size = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fixed = None if size == "mixed" else int(size)
    cache: Any
    if api == "plain":
        import stratacache

        cache = stratacache.Cache(namespace="soak", l1_max_bytes=BOUND)
    elif api == "django":
        import django
        from django.conf import settings

        settings.configure(
            SECRET_KEY="soak",
            CACHES={
                "default": {
                    "BACKEND": "stratacache.django.StrataCache",
                    "LOCATION": "",
                    "OPTIONS": {"NAMESPACE": "soak", "L1_MAX_BYTES": BOUND},
                }
            },
        )
        django.setup()
        from django.core.cache import cache as django_cache

        cache = django_cache

    else:
        raise SystemExit(f"unknown api {api!r}: plain or django")
    filler = "v" * (10 << 10)
    # After the imports and the cache exist (Django's `cache` is a proxy
    # whose backend, and with it the native cache, is made on first use: a
    # first read makes it for both APIs alike): what grows from here is L1's.
    cache.get("warm-up")
    before = rss()
    every = max(1, writes // SAMPLES)
    for i in range(writes):
        cache.set(f"key:{i}", filler[: size_of(fixed, i)])
        cache.get(f"key:{max(0, i - (i * 7) % 64)}")
        if (i + 1) % every == 0:
            s = cache.stats()
            print(f"sample {i + 1} {rss() - before} {s['l1_entries']} {s['l1_bytes']}", flush=True)


if __name__ == "__main__":
    main()
