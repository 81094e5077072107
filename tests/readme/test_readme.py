"""The README's code examples, extracted, type-checked and run as written.

Python blocks: ``mypy --strict``, then run (top-level ``await`` inside an
``async def``), with a prelude giving the names the examples take as given
(``db``, ``pricing``, ...). JS blocks: compiled as TypeScript ES modules by
``tsc --strict`` (the package's own ``.d.ts``, resolved by self-reference),
then run with node. ``redis://127.0.0.1:6379`` becomes ``$REDIS_URL``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
NODE = os.environ.get("STRATACACHE_NODE", "node")
PG_URL = os.environ.get("STRATACACHE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BLOCKS = re.findall(r"^```(python|js)\n(.*?)^```", README, re.S | re.M)
PY = [code for lang, code in BLOCKS if lang == "python"]
JS = [code for lang, code in BLOCKS if lang == "js"]

PY_PRELUDE = """\
from __future__ import annotations

import asyncio
from typing import Any


class _Db:
    def load_user(self, uid: int) -> dict[str, Any]:
        return {"id": uid, "name": "Ada"}

    def load_order(self, oid: int) -> dict[str, Any]:
        return {"id": oid, "status": "pending", "customer": 3}

    def load_products(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {i: {"id": i} for i in ids}

    async def product(self, pid: int) -> dict[str, Any]:
        return {"id": pid}


class _Pricing:
    def quote(self, pid: int) -> float:
        return 9.99


db = _Db()
pricing = _Pricing()
product_ids = ["p1", "p2"]


async def fetch_user_async() -> dict[str, Any]:
    return {"id": 7, "name": "Ada"}

"""

#: Names some examples take as given, added when an example uses and does not define them.
PY_GIVEN = {"product": 'product = {"id": 7, "name": "lamp"}\n'}

DJANGO_EPILOGUE = """
import django
from django.conf import settings

settings.configure(CACHES=CACHES, SECRET_KEY="readme")
django.setup()
from django.core.cache import caches

caches["default"].set("readme", 1)
assert caches["default"].get("readme") == 1
"""

# A tracked Django model: settings first (an in-memory SQLite database),
# then the example, then a row changed and read back through the cache.
DJANGO_MODELS_PROLOGUE = """
import uuid

import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={
        "default": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": "redis://127.0.0.1:6379",
            "OPTIONS": {"NAMESPACE": f"readme-{uuid.uuid4().hex[:12]}"},
        }
    },
    SECRET_KEY="readme",
)
django.setup()
"""

DJANGO_MODELS_EPILOGUE = """
from django.db import connection

with connection.schema_editor() as editor:
    editor.create_model(Book)
dune = Book.objects.create(title="Dune", author_id=1)
assert book_page(dune) == {"title": "Dune"} and all_titles() == ["Dune"]
dune.title = "Dune Messiah"
dune.save()
assert book_page(dune) == {"title": "Dune Messiah"}, "the row's entry went with the save"
Book.objects.create(title="Emma", author_id=2)
assert all_titles() == ["Dune Messiah", "Emma"], "a new row invalidates the model's entries"
"""

# The change feed: the example's tables, then a row changed from another
# connection and the entry gone; the slot and publication are dropped.
FEED_PROLOGUE = """
import psycopg

_db = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
_db.execute("CREATE TABLE IF NOT EXISTS products (id int PRIMARY KEY, name text)")
_db.execute("CREATE TABLE IF NOT EXISTS categories (id int PRIMARY KEY)")
_db.execute("INSERT INTO products VALUES (7, 'Lamp') ON CONFLICT DO NOTHING")
"""

FEED_EPILOGUE = """
import time

_db.execute("UPDATE products SET name = 'Desk lamp' WHERE id = 7")
_deadline = time.monotonic() + 10
while cache.get("product:7") is not None:
    assert time.monotonic() < _deadline, "the change feed did not invalidate product:7"
    time.sleep(0.005)
listener.stop()
# The server ends the listener's backend on its own time after the client
# closed (a query in progress notices at its next send): wait for the slot
# to be released before dropping it.
while _db.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'stratacache' AND active").fetchone():
    assert time.monotonic() < _deadline + 10, "the listener's slot stayed active after stop()"
    time.sleep(0.01)
_db.execute("SELECT pg_drop_replication_slot('stratacache')")
_db.execute("DROP PUBLICATION stratacache")
_db.execute("DROP TABLE products, categories")
"""

# Broker listeners: a cache to give them, then a plain event through each
# broker removes an entry; the listeners are stopped and what they
# declared is removed (the stream, the queue and its dead-letter pair).
EVENTS_PROLOGUE = """
import uuid

from stratacache import Cache

cache = Cache(redis_url="redis://127.0.0.1:6379", namespace=f"readme-{uuid.uuid4().hex[:12]}")
"""

EVENTS_EPILOGUE = """
import asyncio
import json
import time

import nats
import pika


async def _nats_publish() -> None:
    nc = await nats.connect("nats://127.0.0.1:4222")
    await nc.jetstream().publish("stratacache.readme", json.dumps({"keys": ["a"]}).encode())
    await nc.close()


def _gone(key: str) -> None:
    deadline = time.monotonic() + 10
    while cache.get(key) is not None:
        assert time.monotonic() < deadline, key
        time.sleep(0.005)


cache.set("a", 1)
cache.set("b", 1, tags=["customer:9"])
asyncio.run(_nats_publish())
_gone("a")
_conn = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
_ch = _conn.channel()
_ch.confirm_delivery()
_event = {"op": "u", "after": {"order_id": 1, "customer_id": 9}, "source": {"schema": "shop", "table": "orders"}}
_ch.basic_publish("", "stratacache", json.dumps(_event).encode())
_gone("b")
events.stop()
orders.stop()
for _q in ("stratacache", "stratacache.dead"):
    _ch.queue_delete(_q)
_ch.exchange_delete("stratacache.dead")
_conn.close()


async def _drop_stream() -> None:
    nc = await nats.connect("nats://127.0.0.1:4222")
    await nc.jetstream().delete_stream("STRATACACHE")
    await nc.close()


asyncio.run(_drop_stream())
"""

FASTAPI_EPILOGUE = """
from fastapi.testclient import TestClient

with TestClient(app) as client:
    first = client.get("/products/1")
    assert first.status_code == 200 and first.json() == {"id": 1}, first.text
    assert client.get("/products/1").headers["x-cache"] == "HIT"
"""


def python_program(code: str) -> str:
    if "models.Model" in code:
        code = DJANGO_MODELS_PROLOGUE + code + DJANGO_MODELS_EPILOGUE
    if "PgListener(" in code:
        code = FEED_PROLOGUE + code + FEED_EPILOGUE
    if "listen_nats(" in code:
        code = EVENTS_PROLOGUE + code + EVENTS_EPILOGUE
    code = code.replace("redis://127.0.0.1:6379", REDIS_URL)
    code = code.replace("postgresql://postgres@127.0.0.1:5432/postgres", PG_URL)
    if re.search(r"^\S.*\bawait\b", code, re.M):  # top-level await
        body = textwrap.indent(code, "    ")
        code = f"async def _example() -> None:\n{body}\n\nasyncio.run(_example())\n"
    if "CACHES = {" in code:
        code += DJANGO_EPILOGUE
    if "FastAPI()" in code:
        code += FASTAPI_EPILOGUE
    given = "".join(
        line
        for name, line in PY_GIVEN.items()
        if re.search(rf"\b{name}\b", code) and not re.search(rf"^\s*(async def|def|class) {name}\b", code, re.M)
    )
    return PY_PRELUDE + given + code


@pytest.mark.parametrize("n", range(len(PY)))
def test_python_example(n: int, tmp_path: Path) -> None:
    path = tmp_path / f"example_{n}.py"
    path.write_text(python_program(PY[n]), encoding="utf-8")
    mypy = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert mypy.returncode == 0, f"README Python example {n} does not type-check:\n{mypy.stdout}{mypy.stderr}"
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, f"README Python example {n} failed:\n{run.stderr}"


JS_PRELUDE = """\
import express from 'express'
import Fastify from 'fastify'
import { Cache as ReadmeCache } from 'stratacache'

// The examples' console.assert must fail the run (Node's only prints).
console.assert = (ok?: unknown, ...what: unknown[]): void => {
  if (!ok) throw new Error(`README assertion failed ${what.join(' ')}`)
}

const id = 7
const db = {
  user: async (n: number) => ({ id: n, name: 'Ada' }),
  order: async (n: number) => ({ id: n, status: 'pending', customer: 3 }),
}
const app = express()
const fastify = Fastify()
const handler: any = (_req: unknown, res: { json?: (v: unknown) => void }) =>
  res.json ? res.json({ ok: true }) : { ok: true }
"""


def js_program(code: str) -> str:
    code = code.replace("redis://127.0.0.1:6379", REDIS_URL)
    prelude = JS_PRELUDE
    if not re.search(r"\bconst cache\b", code):
        prelude += "const cache = new ReadmeCache()\n"
    epilogue = "\nawait fastify.close()\ncache.close()\nvoid [id, db, app, handler]\n"
    if "new Keyv(" in code:
        epilogue += (
            "await keyv.set('readme', 1)\n"
            "if ((await keyv.get('readme')) !== 1) throw new Error('keyv')\n"
            "await keyv.disconnect()\n"
        )
    if "const user = await cache.getOrSet" in code:
        epilogue += "if (user.id !== id) throw new Error('getOrSet')\n"
    return prelude + code + epilogue


def test_js_examples() -> None:
    out = ROOT / "tests" / "readme" / ".out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sources = []
    for n, code in enumerate(JS):
        src = out / f"example_{n}.mts"
        src.write_text(js_program(code), encoding="utf-8")
        sources.append(str(src))
    tsc = subprocess.run(
        [
            "npx",
            "tsc",
            "--strict",
            "--module",
            "node16",
            "--moduleResolution",
            "node16",
            "--target",
            "es2022",
            "--types",
            "node",
            "--skipLibCheck",
            "--rootDir",
            str(out),
            "--outDir",
            str(out),
            *sources,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert tsc.returncode == 0, f"README JS examples do not type-check:\n{tsc.stdout}{tsc.stderr}"
    for n in range(len(JS)):
        run = subprocess.run(
            [NODE, str(out / f"example_{n}.mjs")], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert run.returncode == 0, f"README JS example {n} failed:\n{run.stderr}"
