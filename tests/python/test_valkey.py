"""Valkey's URL schemes (``valkey://``, ``valkeys://``): the plain API and
Django's ``LOCATION`` take them (Valkey speaks Redis's protocol; Debian 12
has no Valkey server, so they are checked against the test Redis)."""

from __future__ import annotations

from conftest import REDIS_URL, unique
from stratacache import Cache
from stratacache.django import StrataCache

VALKEY_URL = REDIS_URL.replace("redis://", "valkey://", 1)


def test_plain_api_over_valkey_url() -> None:
    ns = unique("valkey")
    a = Cache(redis_url=VALKEY_URL, namespace=ns)
    b = Cache(redis_url=VALKEY_URL, namespace=ns, l1=False)
    a.set("k", {"over": "valkey://"})
    assert b.get("k") == {"over": "valkey://"}


def test_django_location_valkey_url() -> None:
    ns = unique("valkey-dj")
    writer = StrataCache(VALKEY_URL, {"OPTIONS": {"NAMESPACE": ns}})
    reader = StrataCache(VALKEY_URL, {"OPTIONS": {"NAMESPACE": ns, "L1": False}})
    writer.set("k", 1)
    assert reader.get("k") == 1
