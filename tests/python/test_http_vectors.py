"""The HTTP key golden vectors (tests/vectors/http_keys.json) through the
Python binding: the same request gives the same key in every language."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratacache import _native

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "http_keys.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_http_key(v: dict[str, Any]) -> None:
    route = _native.HttpRoute(
        ttl=60.0,
        stale_while_revalidate=0.0,
        stale_if_error=0.0,
        vary=v["vary"],
        shared_cookies=v["shared_cookies"],
        private_headers=v["private_headers"],
        keyed=v["keyed"],
        request_directives="ignore",
        x_cache=True,
        scope="",
    )
    ex = route.exchange(v["method"], v["path"], [tuple(p) for p in v["query"]], [tuple(p) for p in v["headers"]])
    kind, arg = ex.start()
    if kind == "principal":
        kind, arg = ex.set_principal(v["principal"])
    got = {"lookup": arg, "peek": arg, "pass": f"pass:{arg}", "unsafe": "unsafe"}[kind]
    assert got == v["outcome"]
