"""Redis killed under load and restarted, through the Django backend (fail-
open by default): a redis-server of the test's own is SIGKILLed while 8
threads read and write; no exception reaches them, no wrong value is ever
read, and once Redis is back on the same port the cache writes to it again
without being rebuilt."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

from conftest import unique
from stratacache import Cache
from stratacache.django import StrataCache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return p
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)


def test_kill_and_restart_under_load() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    server = start_redis(port)
    ns = unique("faults")
    cache = StrataCache(url, {"OPTIONS": {"NAMESPACE": ns, "OP_TIMEOUT": 0.2, "CONNECT_TIMEOUT": 0.2}})
    stop = threading.Event()
    errors: list[BaseException] = []
    wrong: list[object] = []
    ops = [0]
    steps: list[float] = []

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"w{n}:{i % 20}"
            value = f"{n}:{i % 20}"  # what this key may ever hold
            t = time.perf_counter()
            try:
                cache.set(key, value, 60)
                got = cache.get(key)
                if got is not None and got != value:
                    wrong.append(got)
                loaded = cache.get_or_set(f"gs{n}:{i % 5}", lambda: "loaded", 60)
                if loaded != "loaded":
                    wrong.append(loaded)
            except BaseException as e:  # the test fails on any
                errors.append(e)
            steps.append(time.perf_counter() - t)
            ops[0] += 1
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)  # traffic with Redis up (not a synchronisation)
        server.kill()
        server.wait()
        before = ops[0]
        while ops[0] < before + 200:  # traffic with Redis gone
            time.sleep(0.01)
        server = start_redis(port)
        answered = time.monotonic()
        # Back on L2 without a rebuild: a write through the same cache lands
        # in the restarted Redis (seen by a handle without L1).
        probe = Cache(redis_url=url, namespace=ns, l1=False)
        deadline = time.monotonic() + 10
        while True:
            cache.set("back", "yes", 60)
            if probe.get(cache.make_key("back")) is not None:
                break
            assert time.monotonic() < deadline, "the cache never used the restarted Redis"
            time.sleep(0.01)
        back_after = time.monotonic() - answered
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.kill()
        server.wait()
    assert errors == [], f"exceptions reached fail-open callers: {errors[:3]}"
    assert wrong == [], f"wrong values read: {wrong[:3]}"
    assert cache.stats()["breaker_opens"] >= 1
    assert cache.stats()["breaker_open"] == 0, "closed again once Redis answered"
    # Each step is three calls bounded by the 0.2 s operation timeout, never
    # an unbounded wait while Redis is gone.
    assert max(steps) < 3 * 0.2 + 1.0, f"slowest step {max(steps):.3f} s"
    assert back_after < 1.0, f"back on Redis {back_after:.3f} s after it answered"
