"""pytest set-up: Django settings with one cache alias per configuration
(L1-only, tiered on standalone Redis, tiered on Redis Cluster), and
helpers. Redis locations come from `scripts/with-redis.sh` (`make test`)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

import django
import pytest
from django.conf import settings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
CLUSTER = os.environ.get("STRATACACHE_CLUSTER", "")

if not CLUSTER:
    raise pytest.UsageError("STRATACACHE_CLUSTER is not set: run the tests with `make test`")

_RUN = uuid.uuid4().hex[:8]
PG_URL = os.environ.get("STRATACACHE_PG_URL", "")


def _database() -> dict[str, object]:
    """A database of this run's own for the tracked models
    (test_django_models.py): on PostgreSQL (`make test` runs
    scripts/with-postgres.sh), else SQLite in a temporary directory."""
    if not PG_URL:
        db_dir = tempfile.mkdtemp(prefix="stratacache-tests-")
        atexit.register(shutil.rmtree, db_dir, True)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(db_dir, "db.sqlite3")}
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"stratacache_{_RUN}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    atexit.register(drop)
    info = conninfo_to_dict(PG_URL)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": info.get("user", "postgres"),
        "HOST": info.get("host", "127.0.0.1"),
        "PORT": info.get("port", "5432"),
    }


def _alias(location: str | list[str], **options: object) -> dict[str, object]:
    return {
        "BACKEND": "stratacache.django.StrataCache",
        "LOCATION": location,
        "TIMEOUT": 300,
        "OPTIONS": {"NAMESPACE": f"dj-{_RUN}-{len(_ALIASES)}", "OP_TIMEOUT": 5.0, "CONNECT_TIMEOUT": 5.0, **options},
    }


_ALIASES: dict[str, dict[str, object]] = {}
_ALIASES["default"] = _alias("")
_ALIASES["tiered"] = _alias(REDIS_URL)
_ALIASES["cluster"] = _alias(CLUSTER.split(","), CLUSTER=True)
_ALIASES["prefixed"] = {**_alias(REDIS_URL), "KEY_PREFIX": "shop", "VERSION": 2}

settings.configure(
    DEBUG=False,
    SECRET_KEY="stratacache-tests-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF="django_app",
    INSTALLED_APPS=["django.contrib.sessions", "django.contrib.contenttypes", "stratacache", "tracked_app"],
    # A real database for the tracked models (test_django_models.py).
    DATABASES={"default": _database()},
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    CACHES=_ALIASES,
    SESSION_ENGINE="django.contrib.sessions.backends.cache",
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": False}],
    USE_TZ=True,
)
django.setup()

CACHE_ALIASES = ["default", "tiered", "cluster"]


def unique(prefix: str) -> str:
    return f"{prefix}-{_RUN}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ns() -> str:
    return unique("py")
