"""The operator verbs, one case table run against every command line:
``python -m stratacache``, ``python manage.py stratacache`` (Django's
``call_command`` on the ``prefixed`` alias, whose KEY_PREFIX and VERSION
must apply) and ``npx stratacache`` (node/cli.js), all on real Redis."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command

from conftest import REDIS_URL, unique
from stratacache import Cache
from stratacache.testing import redis_down

ROOT = Path(__file__).resolve().parents[2]
NODE = os.environ.get("STRATACACHE_NODE", "node")
DOCTOR_CHECKS = ["redis", "server", "tls", "clock", "signing", "bus", "breaker"]


@dataclass
class Cli:
    name: str
    run: Callable[..., tuple[int, str, str]]
    seed: Callable[..., None]
    warm: str
    #: Whether the signing key comes from $STRATACACHE_SIGNING_KEY.
    keyed_by_env: bool = True
    caches: list[Cache] = field(default_factory=list)


def _subprocess_cli(name: str, argv0: list[str], tmp: Path) -> Cli:
    ns = unique("cli")
    seeder = Cache(redis_url=REDIS_URL, namespace=ns, serializer="json")

    def run(*args: str, env: dict[str, str] | None = None, redis: str = REDIS_URL) -> tuple[int, str, str]:
        p = subprocess.run(
            [*argv0, *args, "--redis", redis, "--namespace", ns],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(tmp), **(env or {})},
            timeout=60,
        )
        return p.returncode, p.stdout, p.stderr

    def seed(key: str, value: Any, tags: list[str] | None = None) -> None:
        seeder.set(key, value, ttl=600, tags=tags or [])

    warm = "clitest_warm:warm" if name == "python" else "./clitest_warm.js"
    return Cli(name, run, seed, warm, caches=[seeder])


def _django_cli(tmp: Path) -> Cli:
    backend = caches["prefixed"]

    def run(*args: str, env: dict[str, str] | None = None, redis: str = REDIS_URL) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        sys.path.insert(0, str(tmp))
        down = redis_down(backend) if redis != REDIS_URL else contextlib.nullcontext()
        try:
            with down:
                call_command("stratacache", *args, "--cache", "prefixed", stdout=out, stderr=err)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        finally:
            sys.path.remove(str(tmp))
        return code, out.getvalue(), err.getvalue()

    def seed(key: str, value: Any, tags: list[str] | None = None) -> None:
        backend.set(key, value, 600, tags=tags or [])  # type: ignore[call-arg]

    return Cli("django", run, seed, "clitest_warm.warm", keyed_by_env=False)


@pytest.fixture(params=["python", "django", "node"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    (tmp_path / "clitest_warm.py").write_text(
        "def warm(cache):\n    cache.set('warm:1', {'w': 1}, 600)\n    return 1\n"
    )
    (tmp_path / "clitest_warm.js").write_text(
        "module.exports.warm = async (cache) => { await cache.set('warm:1', { w: 1 }, 600_000); return 1 }\n"
    )
    if request.param == "python":
        c = _subprocess_cli("python", [sys.executable, "-m", "stratacache"], tmp_path)
    elif request.param == "node":
        c = _subprocess_cli("node", [NODE, str(ROOT / "node" / "cli.js")], tmp_path)
    else:
        c = _django_cli(tmp_path)
    # Every case starts from an empty namespace.
    assert c.run("clear", "--yes")[0] == 0
    yield c
    for cache in c.caches:
        cache.close()


def test_get_prints_the_value_and_says_when_missing(cli: Cli) -> None:
    cli.seed("user:1", {"id": 1, "name": "Ada", "tags": ["a", "b"]})
    code, out, _ = cli.run("get", "user:1")
    assert code == 0
    assert json.loads(out) == {"id": 1, "name": "Ada", "tags": ["a", "b"]}
    code, out, err = cli.run("get", "user:2")
    assert (code, out) == (1, "")
    assert "is not cached" in err


def test_delete(cli: Cli) -> None:
    cli.seed("k", 1)
    assert cli.run("delete", "k")[:2] == (0, "deleted\n")
    assert cli.run("get", "k")[0] == 1
    assert cli.run("delete", "k")[:2] == (0, "not cached\n")


def test_invalidate_tags_drops_only_tagged_entries(cli: Cli) -> None:
    cli.seed("a", "A", ["t1"])
    cli.seed("b", "B", ["t2"])
    cli.seed("c", "C", ["t3"])
    assert cli.run("invalidate-tags", "t1", "t2")[:2] == (0, "invalidated 2 tag(s)\n")
    assert cli.run("get", "a")[0] == 1
    assert cli.run("get", "b")[0] == 1
    assert json.loads(cli.run("get", "c")[1]) == "C"


def test_clear_asks_and_refuses_without_a_terminal(cli: Cli) -> None:
    cli.seed("a", "A")
    code, _, err = cli.run("clear")
    assert code == 2
    assert "pass --yes" in err
    assert cli.run("get", "a")[0] == 0
    assert cli.run("clear", "--yes")[:2] == (0, "cleared\n")
    assert cli.run("get", "a")[0] == 1


def test_warm_calls_the_users_function(cli: Cli) -> None:
    assert cli.run("warm", cli.warm)[:2] == (0, "warmed 1 key(s)\n")
    assert json.loads(cli.run("get", "warm:1")[1]) == {"w": 1}
    code, _, err = cli.run("warm", "no_such_module_xyz:warm" if cli.name != "node" else "./missing.js")
    assert code == 2
    assert "no_such_module_xyz" in err or "missing.js" in err


def test_stats_counts_the_namespace(cli: Cli) -> None:
    cli.seed("a", "A", ["t1"])
    cli.seed("b", "B")
    cli.run("delete", "b")
    code, out, _ = cli.run("stats", "--json")
    assert code == 0
    s = json.loads(out)
    assert (s["entries"], s["tombstones"], s["leases"]) == (1, 1, 0)
    code, out, _ = cli.run("stats")
    assert out.splitlines()[0].split() == ["entries", "1"]


def test_doctor_passes_and_catches_a_signing_key_mismatch(cli: Cli) -> None:
    cli.seed("a", "A")
    code, out, _ = cli.run("doctor", "--json")
    report = json.loads(out)
    assert code == 0, out
    assert [c["name"] for c in report["checks"]] == DOCTOR_CHECKS
    code, out, _ = cli.run("doctor")
    assert code == 0
    assert out.startswith("ok    redis    answered PING")
    if cli.keyed_by_env:
        # The entry was written unsigned; a process given a key disagrees.
        code, out, _ = cli.run("doctor", env={"STRATACACHE_SIGNING_KEY": "another key"})
        assert code == 1
        assert "FAIL  signing  1 of 1 sampled entries are unsigned" in out


def test_bad_usage_is_a_message_not_a_trace(cli: Cli) -> None:
    if cli.name == "django":
        with pytest.raises(Exception, match=r"invalid choice|unrecognized"):
            call_command("stratacache", "frobnicate")
        return
    code, _, err = cli.run("frobnicate")
    assert code == 2
    assert "Traceback" not in err and "    at " not in err


def test_redis_trouble_is_an_error_not_a_silent_success(cli: Cli) -> None:
    dead = "redis://127.0.0.1:1"  # nothing listens there (Django: a simulated outage)
    for args in (["delete", "k"], ["invalidate-tags", "t"], ["clear", "--yes"], ["get", "k"]):
        code, out, err = cli.run(*args, redis=dead)
        assert code != 0, (args, out)
        assert "Redis" in err and "Traceback" not in err, (args, err)
        assert out == "", (args, out)


def test_python_cli_never_unpickles_unsigned_entries(tmp_path: Path) -> None:
    c = _subprocess_cli("python", [sys.executable, "-m", "stratacache"], tmp_path)
    pickled = Cache(redis_url=REDIS_URL, namespace=c.caches[0].namespace)  # pickle: the default
    pickled.set("p", {"a": 1}, ttl=600)
    code, out, err = c.run("get", "p")  # json by default: a pickle reads as not cached
    assert (code, out) == (1, "")
    code, _, err = c.run("get", "p", "--serializer", "pickle")
    assert code == 2
    assert "STRATACACHE_SIGNING_KEY" in err
    pickled.close()
    for cache in c.caches:
        cache.close()
