"""Redis Sentinel from Python and Django: a master and a real sentinel of
this test's own (the failover itself is tested in the core,
crates/core/tests/sentinel.rs); the plain API on a ``redis+sentinel://``
URL and Django's backend with django-redis's ``SENTINELS`` form."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from conftest import unique
from stratacache import Cache
from stratacache.django import StrataCache
from stratacache.django.options import cache_kwargs


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A master monitored as ``shop`` by one sentinel; the sentinel's port."""
    d: Path = tmp_path_factory.mktemp("sentinel")
    master, sport = _port(), _port()
    conf = d / "sentinel.conf"
    conf.write_text(f"port {sport}\nbind 127.0.0.1\nsentinel monitor shop 127.0.0.1 {master} 1\n")
    procs = [
        subprocess.Popen(
            ["redis-server", "--port", str(master), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL),
    ]
    try:
        deadline = time.monotonic() + 10
        while not (_answers(master) and _answers(sport)):
            assert time.monotonic() < deadline, "the master and the sentinel did not start"
            time.sleep(0.02)
        yield sport
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_plain_api_on_a_sentinel_url(sentinel: int) -> None:
    c = Cache(redis_url=f"redis+sentinel://127.0.0.1:{sentinel}/shop", namespace=unique("sent"))
    c.set("k", {"v": 1})
    assert c.get("k") == {"v": 1}
    other = Cache(redis_url=f"redis+sentinel://127.0.0.1:{sentinel}/shop", namespace=c.namespace, l1=False)
    assert other.get("k") == {"v": 1}  # through Redis, not this L1
    c.close()
    other.close()


def test_django_sentinels_option(sentinel: int) -> None:
    backend = StrataCache(
        "redis://shop/0",
        {"OPTIONS": {"SENTINELS": [("127.0.0.1", sentinel)], "NAMESPACE": unique("dj-sent")}},
    )
    backend.set("k", "v", 60)
    assert backend.get("k") == "v"
    backend.close()


def test_django_sentinels_option_translation() -> None:
    kw = cache_kwargs("redis://:pw@shop/2", {"SENTINELS": [("h1", 26379), ("h2", "26380")]})
    assert kw["redis_url"] == "redis+sentinel://:pw@h1:26379,h2:26380/shop/2"
    kw = cache_kwargs("rediss://shop", {"SENTINELS": [("h1", 26379), ("::1", 26380)]})
    assert kw["redis_url"] == "rediss+sentinel://h1:26379,[::1]:26380/shop"
    with pytest.raises(ImproperlyConfigured, match="SERVICE_NAME"):
        cache_kwargs("", {"SENTINELS": [("h1", 26379)]})
    with pytest.raises(ImproperlyConfigured, match="pairs"):
        cache_kwargs("redis://shop", {"SENTINELS": ["h1"]})
