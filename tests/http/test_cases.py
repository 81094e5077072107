"""The HTTP caching case table (tests/http/cases.json), run against FastAPI,
Express and Fastify: two real app processes per framework sharing one Redis,
real requests over loopback (http.client: headers exactly as written).

Every case runs in every framework; a behaviour cannot differ by framework.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
TABLE = json.loads((HERE / "cases.json").read_text())
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
NODE = os.environ.get("STRATACACHE_NODE", "node")
FRAMEWORKS = ["fastapi", "express", "fastify"]
#: Headers that may differ between a hit and the miss that stored it: the
#: four the cache rewrites per answer, and the connection's own.
VOLATILE = {"age", "date", "x-cache", "cache-status", "connection", "keep-alive"}
#: Headers the cache adds to a response that has none of its own (the
#: uncached route has none; when it has one, the cached route must send it
#: unchanged).
ADDED = {"etag", "last-modified", "cache-control"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # One Host for both app processes, as behind a load balancer (the host
    # is part of the key).
    headers = {"Host": "app.test", **(headers or {})}
    try:
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        hs: dict[str, str] = {}
        for k, v in r.getheaders():
            k = k.lower()
            hs[k] = f"{hs[k]}, {v}" if k in hs else v
        return Reply(r.status, hs, body)
    finally:
        conn.close()


class Apps:
    """Two processes of one framework's app on one Redis namespace."""

    def __init__(self, framework: str, env: dict[str, str] | None = None) -> None:
        self.framework = framework
        self.namespace = f"http-cases-{framework}-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port(), free_port()]
        self.procs: list[subprocess.Popen[bytes]] = []
        for port in self.ports:
            if framework == "fastapi":
                cmd = [sys.executable, str(HERE / "app_fastapi.py"), str(port), self.namespace, REDIS_URL]
            else:
                cmd = [NODE, str(HERE / "app.js"), framework, str(port), self.namespace, REDIS_URL]
            self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}))
        for port, proc in zip(self.ports, self.procs, strict=True):
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, f"{framework} app exited with {proc.returncode}"
                try:
                    request(port, "GET", "/__calls")
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"{framework} app on {port} never answered"
                    time.sleep(0.05)

    def calls(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for port in self.ports:
            for k, v in request(port, "GET", "/__calls").json().items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module", params=FRAMEWORKS)
def apps(request: pytest.FixtureRequest) -> Iterator[Apps]:
    a = Apps(request.param)
    try:
        yield a
    finally:
        a.close()


def substitute(headers: dict[str, str], labels: dict[str, Reply]) -> dict[str, str]:
    """`{etag:label}` in a header value: that header of a labelled reply."""
    out = {}
    for k, v in headers.items():
        if v.startswith("{") and v.endswith("}") and ":" in v:
            name, label = v[1:-1].rsplit(":", 1)
            v = labels[label].headers[name]
        out[k] = v
    return out


def check(r: Reply, expect: dict[str, Any], labels: dict[str, Reply], apps: Apps, path: str, where: str) -> None:
    for k, want in expect.items():
        if k == "status":
            assert r.status == want, f"{where}: status {r.status} ({r.body[:200]!r})"
        elif k in ("x-cache", "cache-status"):
            assert r.headers.get(k) == want, f"{where}: {k} {r.headers.get(k)!r}, headers {r.headers}"
        elif k == "query":
            assert r.json()["query"] == want, f"{where}: query {r.json()['query']!r}"
        elif k == "echo":
            assert r.json()["echo"] == want, f"{where}: echo {r.json()['echo']!r}"
        elif k == "json":
            assert r.json() == want, f"{where}: body {r.body!r}"
        elif k == "body":
            assert r.body.decode() == want, f"{where}: body {r.body!r}"
        elif k == "body_empty":
            assert (r.body == b"") == want, f"{where}: body {r.body!r}"
        elif k == "header":
            for name, value in want.items():
                assert r.headers.get(name) == value, f"{where}: {name} {r.headers.get(name)!r}"
        elif k == "header_present":
            for name in want:
                assert name in r.headers, f"{where}: no {name} in {r.headers}"
        elif k == "same_as":
            assert r.body == labels[want].body, f"{where}: {r.body!r} != {labels[want].body!r}"
        elif k == "differs_from":
            assert r.body != labels[want].body, f"{where}: still {r.body!r}"
        elif k == "content_length_of":
            assert r.headers.get("content-length") == str(len(labels[want].body)), f"{where}: {r.headers}"
        elif k == "same_as_raw":
            raw = request(apps.ports[0], "GET", "/raw" + path)
            assert (r.status, r.body) == (raw.status, raw.body), f"{where}: {r.body!r} vs raw {raw.body!r}"
            mine = {k: v for k, v in r.headers.items() if k not in VOLATILE and (k not in ADDED or k in raw.headers)}
            theirs = {k: v for k, v in raw.headers.items() if k not in VOLATILE}
            assert mine == theirs, f"{where}: headers differ from the uncached route's"
        else:
            raise AssertionError(f"unknown expectation {k!r}")


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_case(apps: Apps, case: dict[str, Any]) -> None:
    labels: dict[str, Reply] = {}
    # Every response by entry (its ETag): a hit must be the response that
    # stored the entry (status, body, headers less VOLATILE), in every case
    # of the table. A background refresh stores an entry no step saw: its
    # first hit stands for it.
    seen: dict[str, Reply] = {}

    def same_as_stored(r: Reply, method: str, where: str) -> None:
        etag = r.headers.get("etag")
        if method != "GET" or r.status == 304 or etag is None or r.headers.get("x-cache") not in ("MISS", "HIT"):
            return
        if etag not in seen:
            seen[etag] = r
            return
        drop = lambda hs: {n: v for n, v in hs.items() if n not in VOLATILE}  # noqa: E731
        first = seen[etag]
        assert (r.status, r.body, drop(r.headers)) == (first.status, first.body, drop(first.headers)), (
            f"{where}: an answer differs from the one that stored its entry: {r.headers} vs {first.headers}"
        )

    before = apps.calls()
    for i, step in enumerate(case["steps"]):
        where = f"{apps.framework}: {case['name']}: step {i}"
        if "calls" in step:
            now = apps.calls()
            delta = {k: now.get(k, 0) - before.get(k, 0) for k in step["calls"]}
            assert delta == step["calls"], f"{where}: handler runs {delta}"
        elif "sleep" in step:
            time.sleep(step["sleep"])  # past a TTL: expiry is the point
        elif "fail" in step:
            for port in apps.ports:
                request(port, "POST", f"/__fail?on={1 if step['fail'] else 0}")
        elif "concurrent" in step:
            headers = step.get("headers", {})
            ports = [apps.ports[n % 2] for n in range(step["concurrent"])]
            with ThreadPoolExecutor(step["concurrent"]) as pool:
                futures = [pool.submit(request, p, "GET", step["get"], headers) for p in ports]
                replies = [f.result() for f in futures]
            for r in replies:
                check(r, step.get("expect", {}), labels, apps, step["get"], where)
        elif "until" in step:
            port = apps.ports[step["app"]]
            deadline = time.monotonic() + 10
            while True:
                r = request(port, "GET", step["until"])
                try:
                    check(r, step["expect"], labels, apps, step["until"], where)
                    same_as_stored(r, "GET", where)
                    if "label" in step:
                        labels[step["label"]] = r
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.01)
        else:
            port = apps.ports[step["app"]]
            headers = substitute(step.get("headers", {}), labels)
            r = request(port, step.get("method", "GET"), step["get"], headers)
            check(r, step.get("expect", {}), labels, apps, step["get"], where)
            same_as_stored(r, step.get("method", "GET"), where)
            if "label" in step:
                labels[step["label"]] = r
