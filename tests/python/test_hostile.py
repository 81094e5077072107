"""Hostile input, one test each: oversized values, oversized and non-string
keys, values that cannot be serialized, and bytes written into Redis by
someone else (garbage, truncated, another envelope version, unknown flags,
forged or foreign signatures, a pickle that runs code). Bad input is a
typed error and stores nothing; bad bytes in Redis are a counted miss and
are never unpickled without a valid signature."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from typing import Any
from urllib.parse import urlparse

import pytest

import stratacache
from conftest import REDIS_URL, unique
from stratacache import Cache


class Resp:
    """A minimal RESP2 client (written for these tests) to put arbitrary
    bytes into Redis and read them back, binary-safe."""

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=5)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(65536)
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def call(self, *args: bytes | str) -> Any:
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exactly(n)
        if kind == b":":
            return int(rest)
        return rest.decode()


@pytest.fixture
def resp() -> Any:
    r = Resp(REDIS_URL)
    yield r
    r.close()


def rkey(ns: str, key: str) -> str:
    # docs/architecture.md: sc:<namespace>:{<key>} for short plain keys.
    return f"sc:{ns}:{{{key}}}"


def test_oversized_values_are_refused_and_nothing_is_stored(resp: Resp) -> None:
    ns = unique("big")
    c = Cache(namespace=ns, redis_url=REDIS_URL, max_value_bytes=1000)
    c.set("k", "small")
    with pytest.raises(stratacache.ValueTooLargeError) as e:
        c.set("k", b"x" * 2000)
    assert e.value.code == "E_VALUE_TOO_LARGE"
    assert c.get("k") == "small", "the previous value is untouched"
    calls = []

    def loader() -> bytes:
        calls.append(1)
        return b"y" * 2000

    for _ in range(2):
        with pytest.raises(stratacache.ValueTooLargeError):
            c.get_or_set("loaded", loader)
    assert len(calls) == 2, "nothing was cached"
    assert resp.call("EXISTS", rkey(ns, "loaded")) == 0


def test_oversized_keys_are_hashed_and_never_collide(resp: Resp) -> None:
    ns = unique("longkey")
    c = Cache(namespace=ns, redis_url=REDIS_URL)
    a, b = "a" * 1_000_000, "a" * 999_999 + "b"
    c.set(a, "A")
    c.set(b, "B")
    assert (c.get(a), c.get(b)) == ("A", "B")
    fresh = Cache(namespace=ns, redis_url=REDIS_URL, l1=False)
    assert (fresh.get(a), fresh.get(b)) == ("A", "B"), "from Redis"
    # In Redis the key is its SHA-256 (docs/architecture.md), not 1 MB.
    for k in (a, b):
        hashed = f"sc:{ns}:{{#{hashlib.sha256(k.encode()).hexdigest()}}}"
        assert resp.call("EXISTS", hashed) == 1
    # Non-string keys are a TypeError; an empty key a typed error.
    with pytest.raises(TypeError):
        c.set(42, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.get(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(stratacache.InvalidKeyError):
        c.set("", "x")


def test_unserializable_values_are_refused_and_nothing_is_stored(resp: Resp) -> None:
    ns = unique("unser")
    c = Cache(namespace=ns, redis_url=REDIS_URL)
    c.set("k", "old")
    with pytest.raises(stratacache.SerializationError):
        c.set("k", threading.Lock())
    assert c.get("k") == "old"
    js = Cache(namespace=ns, redis_url=REDIS_URL, serializer="json")
    with pytest.raises(stratacache.SerializationError):
        js.set("k", {1, 2})
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(stratacache.SerializationError):
        js.set("k", circular)
    assert c.get("k") == "old"
    with pytest.raises(stratacache.SerializationError):
        c.get_or_set("loaded", threading.Lock)
    assert resp.call("EXISTS", rkey(ns, "loaded")) == 0


def _envelope(resp: Resp, ns: str, key: str) -> bytes:
    data = resp.call("GET", rkey(ns, key))
    assert isinstance(data, bytes) and data[:2] == b"\xc5\x01", "an envelope v1"
    return data


@pytest.mark.parametrize(
    "name,tamper",
    [
        ("garbage", lambda env: os.urandom(64)),
        ("empty", lambda env: b""),
        ("truncated", lambda env: env[:-7]),
        ("header only", lambda env: env[:20]),
        ("trailing bytes", lambda env: env + b"\x00"),
        ("other envelope version", lambda env: env[:1] + b"\x02" + env[2:]),
        ("unknown flag", lambda env: env[:2] + bytes([env[2] | 0x80]) + env[3:]),
        ("forged signature", lambda env: env[:-1] + bytes([env[-1] ^ 1])),
        ("payload changed under the signature", lambda env: env[:-40] + bytes([env[-40] ^ 1]) + env[-39:]),
    ],
)
def test_bytes_written_by_someone_else_are_counted_misses(resp: Resp, name: str, tamper: Any) -> None:
    ns = unique("garbage")
    writer = Cache(namespace=ns, redis_url=REDIS_URL, l1=False, signing_key=b"ours")
    writer.set("k", {"v": 1})
    hostile = tamper(_envelope(resp, ns, "k"))
    resp.call("SET", rkey(ns, "k"), hostile)
    reader = Cache(namespace=ns, redis_url=REDIS_URL, signing_key=b"ours")
    assert reader.get("k") is None, name
    assert reader.stats()["decode_errors"] == 1
    assert reader.get_many(["k"]) == {}
    assert reader.get_or_set("k", lambda: "reloaded") == "reloaded", "a miss: the loader runs"
    assert reader.get("k") == "reloaded"


def test_a_pickle_that_runs_code_is_never_unpickled_without_a_valid_signature(resp: Resp) -> None:
    flag = f"STRATACACHE_PWNED_{unique('x').replace('-', '_')}"

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (exec, (f"import os; os.environ[{flag!r}] = '1'",))

    ns = unique("evil")
    attacker = Cache(namespace=ns, redis_url=REDIS_URL, l1=False)  # no signing key
    attacker.set("session", Evil())
    signed = Cache(namespace=ns, redis_url=REDIS_URL, signing_key=b"ours")
    assert signed.get("session") is None
    assert flag not in os.environ, "the payload never ran"
    assert signed.stats()["decode_errors"] == 1
    # Also when the attacker signs with a key of its own.
    other = Cache(namespace=ns, redis_url=REDIS_URL, l1=False, signing_key=b"attacker")
    other.set("session", Evil())
    assert signed.get("session") is None
    assert flag not in os.environ
    # The payload is live: a reader that does not sign would run it (which
    # is why the Django backend signs by default).
    unsigned = Cache(namespace=ns, redis_url=REDIS_URL, l1=False)
    attacker.set("session", Evil())
    unsigned.get("session")
    assert os.environ.pop(flag, None) == "1"
