"""The shared table of load outcomes (tests/vectors/load_outcomes.json),
run through ``Cache.get_or_set`` and ``Cache.aget_or_set`` on L1 alone and
on Redis: the same table Rust and Node run, so a load settles the same way
in every language (the core decides; see ``Lease.settle``)."""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading
from typing import Any

import pytest

from conftest import REDIS_URL, unique
from stratacache import Cache, LoaderTimeoutError, NoCache

TABLE = json.loads((pathlib.Path(__file__).parents[1] / "vectors" / "load_outcomes.json").read_text())["cases"]
KEY = "k"


class Boom(Exception):
    pass


def _cache(redis: bool) -> Cache:
    ns = unique("outcomes")
    if redis:
        return Cache(redis_url=REDIS_URL, namespace=ns, op_timeout=5.0, connect_timeout=5.0)
    return Cache(namespace=ns)


def _policy(case: dict[str, Any]) -> dict[str, Any]:
    p = case.get("policy", {})
    out: dict[str, Any] = {"ttl": 60, "grace": 60}
    if p.get("fail_safe"):
        out["fail_safe"] = True
    for name in ("none_ttl", "soft_timeout", "hard_timeout"):
        if f"{name}_ms" in p:
            out[name] = p[f"{name}_ms"] / 1000
    return out


def _prior(c: Cache, case: dict[str, Any]) -> None:
    if "prior" in case:
        c.set(KEY, case["prior"], 60, grace=60, tags=["prior"])
        c.invalidate_tags(["prior"])


def _check(case: dict[str, Any], outcome: Any, error: BaseException | None) -> None:
    want = case["expect"]
    if want.get("timeout"):
        assert isinstance(error, LoaderTimeoutError), (case["name"], error, outcome)
    elif "error" in want:
        assert isinstance(error, Boom) and str(error) == want["error"], (case["name"], error, outcome)
    else:
        assert error is None, (case["name"], error)
        assert outcome == want["answer"], case["name"]


@pytest.mark.parametrize("redis", [False, True], ids=["l1", "redis"])
@pytest.mark.parametrize("case", TABLE, ids=[c["name"] for c in TABLE])
def test_sync(case: dict[str, Any], redis: bool) -> None:
    c = _cache(redis)
    _prior(c, case)
    spec = case["loader"]
    gate = threading.Event()
    if "release_ms" in spec:
        threading.Timer(spec["release_ms"] / 1000, gate.set).start()

    def loader() -> Any:
        if "value" in spec:
            return spec["value"]
        if spec.get("nothing"):
            return None
        if "uncached" in spec:
            return NoCache(spec["uncached"])
        if "error" in spec:
            raise Boom(spec["error"])
        gate.wait(30)
        return spec["slow"]

    outcome, error = None, None
    try:
        outcome = c.get_or_set(KEY, loader, **_policy(case))
    except BaseException as e:
        error = e
    _check(case, outcome, error)
    gate.set()
    assert c.get_or_set(KEY, lambda: "again", 60) == case["expect"]["then"], case["name"]
    c.close()


@pytest.mark.parametrize("redis", [False, True], ids=["l1", "redis"])
@pytest.mark.parametrize("case", TABLE, ids=[c["name"] for c in TABLE])
def test_async(case: dict[str, Any], redis: bool) -> None:
    async def main() -> None:
        c = _cache(redis)
        _prior(c, case)
        spec = case["loader"]
        gate = asyncio.Event()
        if "release_ms" in spec:
            asyncio.get_running_loop().call_later(spec["release_ms"] / 1000, gate.set)

        async def loader() -> Any:
            if "value" in spec:
                return spec["value"]
            if spec.get("nothing"):
                return None
            if "uncached" in spec:
                return NoCache(spec["uncached"])
            if "error" in spec:
                raise Boom(spec["error"])
            await gate.wait()
            return spec["slow"]

        outcome, error = None, None
        try:
            outcome = await c.aget_or_set(KEY, loader, **_policy(case))
        except BaseException as e:
            error = e
        _check(case, outcome, error)
        gate.set()

        async def again() -> str:
            return "again"

        assert await c.aget_or_set(KEY, again, 60) == case["expect"]["then"], case["name"]
        c.close()

    asyncio.run(main())
