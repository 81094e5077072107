"""No crash at interpreter exit after asyncio use.

A runtime thread handing a result to asyncio could still be inside Python
when finalization began; CPython then ended the thread and its unwind
touched Python unattached: an abort (``PyGILState_Release ... finalizing``)
or a segfault in 5-10 % of runs (up to 22 % under load). Each script runs
many times here; one bad exit fails the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REDIS_URL

RUNS = 100

PLAIN = textwrap.dedent(
    """
    import asyncio, sys, uuid
    import stratacache

    cache = stratacache.Cache(redis_url=sys.argv[1] or None, namespace="exit-" + uuid.uuid4().hex)

    async def loader():
        return {"v": 1}

    async def main():
        for i in range(5):
            await cache.aget_or_set(f"k{i}", loader)
            await cache.aset(f"s{i}", [i] * 10)
            await cache.aget(f"s{i}")
            await cache.aget(f"missing{i}")

    asyncio.run(main())
    """
)

DJANGO = textwrap.dedent(
    """
    import asyncio, sys, uuid
    import django
    from django.conf import settings

    settings.configure(SECRET_KEY="exit-test", CACHES={"default": {
        "BACKEND": "stratacache.django.StrataCache", "LOCATION": sys.argv[1],
        "OPTIONS": {"NAMESPACE": "exit-" + uuid.uuid4().hex},
    }})
    django.setup()
    from django.core.cache import cache

    async def main():
        for i in range(5):
            await cache.aset(f"s{i}", i)
            await cache.aget(f"s{i}")
            await cache.aget_or_set(f"k{i}", lambda: i)

    asyncio.run(main())
    """
)


def _run(script: str, location: str) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-c", script, location], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stderr[-2000:]


@pytest.mark.parametrize(
    ("script", "location"),
    [(PLAIN, ""), (PLAIN, REDIS_URL), (DJANGO, ""), (DJANGO, REDIS_URL)],
    ids=["plain-l1", "plain-redis", "django-l1", "django-redis"],
)
def test_no_crash_at_exit_after_asyncio(script: str, location: str) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _run(script, location), range(RUNS)))
    bad = [(rc, err) for rc, err in results if rc != 0]
    assert not bad, f"{len(bad)}/{RUNS} runs exited badly; first: rc={bad[0][0]}\n{bad[0][1]}"
