"""Edge purges from Python: the ``edge_purge`` option (plain ``Cache`` and
Django's ``EDGE_PURGE``) reaches the core as written, and an invalidation
arrives at a real local HTTP endpoint (a webhook) once, signed. Each
vendor's request shape is checked in crates/core/tests/purge.rs; a real
Varnish in tests/http/test_varnish.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import REDIS_URL, unique
from stratacache import Cache
from stratacache.django import StrataCache
from stratacache.exceptions import ConfigError


class Hook:
    """A webhook receiver on a loopback port: records each POST."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                hook.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/purge"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


def test_an_invalidation_reaches_the_webhook_once_signed(hook: Hook) -> None:
    ns = unique("edge-py")
    edges = [{"kind": "webhook", "url": hook.url, "secret": "s3cret", "linger_ms": 0}]
    a = Cache(redis_url=REDIS_URL, namespace=ns, edge_purge=edges)
    b = Cache(redis_url=REDIS_URL, namespace=ns, edge_purge=edges, l1_max_bytes=1 << 20)  # another state
    b.get("bus-probe")  # b subscribes to the bus: it hears of a's invalidation
    a.set("k", 1, tags=["product:7"])
    a.invalidate_tags(["product:7"])
    deadline = time.monotonic() + 20
    while b.stats()["bus_received"] == 0:
        assert time.monotonic() < deadline, "b never heard of the invalidation"
        hook.arrived.wait(0.01)
    assert a.flush_edge_purges(10) and b.flush_edge_purges(10)
    assert len(hook.got) == 1
    headers, body = hook.got[0]
    assert json.loads(body) == {"namespace": ns, "tags": ["product:7", "stratacache-overflow"], "soft": False}
    want = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-stratacache-signature"] == want
    stats = a.stats()
    assert (stats["edge_purges"], stats["edge_purge_tags"], stats["edge_purge_pending"]) == (1, 2, 0)
    assert b.stats()["edge_purges"] == 0


def test_django_edge_purge_option(hook: Hook) -> None:
    backend = StrataCache(
        REDIS_URL,
        {
            "OPTIONS": {
                "NAMESPACE": unique("edge-dj"),
                "EDGE_PURGE": [{"kind": "webhook", "url": hook.url, "linger_ms": 0}],
            }
        },
    )
    backend.invalidate_tags(["order:1"])
    assert backend.flush_edge_purges(10)
    assert [json.loads(b)["tags"] for _, b in hook.got] == [["order:1", "stratacache-overflow"]]


@pytest.mark.parametrize(
    ("edges", "names"),
    [
        ([{"kind": "fastly", "token": "sekrit"}], "edge_purge[0].service_id"),
        ([{"kind": "cloudflare", "zone_id": "z", "token": "t", "soft": True}], "edge_purge[0].soft"),
        ([{"kind": "varnish", "url": "http://v/", "lingr_ms": 1}], 'did you mean "linger_ms"'),
        ("http://varnish/", "edge_purge must be a list"),
        ('{"kind": "fastly", "token": "sekrit"}', "edge_purge must be a list"),
        ([{"kind": "fastly", "service_id": "s", "token": "sekrit\n"}], "edge_purge[0].token"),
        ([{"kind": "webhook", "url": "http://h/", "headers": {"a": object()}}], "edge_purge"),
    ],
)
def test_bad_edges_are_config_errors_naming_the_field(edges: Any, names: str) -> None:
    with pytest.raises(ConfigError) as e:
        Cache(edge_purge=edges)
    assert names in str(e.value)
    assert "sekrit" not in str(e.value)


def test_one_edge_may_be_given_as_a_dict(hook: Hook) -> None:
    c = Cache(namespace=unique("edge-one"), edge_purge={"kind": "webhook", "url": hook.url, "linger_ms": 0})
    c.invalidate_tags(["t"])
    assert c.flush_edge_purges(10)
    assert [json.loads(b)["tags"] for _, b in hook.got] == [["t", "stratacache-overflow"]]
