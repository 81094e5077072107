"""What the Python package takes from the core, checked against
tests/vectors/constants.json (written by the core): value formats, error
codes, and every documented default (``Cache``'s signature, Django's
OPTIONS table, the read-through policy). Options not given are passed to
the native module as ``None``, so the core's defaults apply; this keeps the
documentation and the signatures honest."""

from __future__ import annotations

import inspect
import json
import pathlib
import re
from typing import Any

from stratacache import _native, client, django, serializers
from stratacache._loading import Policy
from stratacache.django.options import cache_kwargs, policy
from stratacache.exceptions import _BY_CODE, StrataCacheError

V = json.loads((pathlib.Path(__file__).parents[1] / "vectors" / "constants.json").read_text())
C = V["config_defaults"]


def test_formats_are_the_core_ids() -> None:
    got = {
        name[len("FORMAT_") :].lower(): getattr(serializers, name)
        for name in dir(serializers)
        if name.startswith("FORMAT_")
    }
    assert got == V["formats"]


def test_every_core_error_code_has_its_own_exception() -> None:
    assert list(_native.ERROR_CODES) == V["error_codes"]
    assert list(_native.L2_ERROR_CODES) == V["l2_error_codes"]
    classes = [_BY_CODE[code] for code in V["error_codes"]]
    assert all(issubclass(c, StrataCacheError) and c is not StrataCacheError for c in classes)
    assert len(set(classes)) == len(classes)


def test_cache_signature_documents_the_core_defaults() -> None:
    params = inspect.signature(client.Cache.__init__).parameters
    want: dict[str, Any] = {
        "namespace": C["namespace"],
        "l1": C["l1_enabled"],
        "l1_max_bytes": C["l1_max_bytes"],
        "ttl": C["default_ttl_ms"] / 1000,
        "compress_threshold": C["compress_threshold"],
        "max_value_bytes": C["max_value_bytes"],
        "connect_timeout": C["connect_timeout_ms"] / 1000,
        "op_timeout": C["op_timeout_ms"] / 1000,
        "wait_timeout": C["wait_timeout_ms"] / 1000,
        "tombstone_ttl": C["tombstone_ttl_ms"] / 1000,
        "ttl_jitter": C["ttl_jitter"],
        "fleet_lease": C["fleet_lease"],
        "track_dependencies": C["track_dependencies"],
        "lease_ttl": C["lease_ttl_ms"] / 1000,
        "breaker_threshold": C["breaker_threshold"],
        "breaker_cooldown": C["breaker_cooldown_ms"] / 1000,
    }
    assert {k: params[k].default for k in want} == want


def test_native_signature_leaves_defaults_to_the_core() -> None:
    params = inspect.signature(_native.Cache).parameters
    assert params and all(p.default is None for p in params.values())


def _documented(doc: str, name: str) -> float:
    """The first parenthesized default after ``NAME`` in Django's OPTIONS table."""
    at = doc.index(f"``{name}``")
    m = re.search(r"\((?:default )?([\d.]+)( MiB)?\)", doc[at:])
    assert m, name
    return float(m.group(1)) * (1 << 20 if m.group(2) else 1)


def test_django_options_table_documents_the_core_defaults() -> None:
    doc = django.__doc__ or ""
    want = {
        "L1_MAX_BYTES": C["l1_max_bytes"],
        "COMPRESS_THRESHOLD": C["compress_threshold"],
        "MAX_VALUE_BYTES": C["max_value_bytes"],
        "CONNECT_TIMEOUT": C["connect_timeout_ms"] / 1000,
        "OP_TIMEOUT": C["op_timeout_ms"] / 1000,
        "WAIT_TIMEOUT": C["wait_timeout_ms"] / 1000,
        "LEASE_TTL": C["lease_ttl_ms"] / 1000,
        "BREAKER_THRESHOLD": C["breaker_threshold"],
        "BREAKER_COOLDOWN": C["breaker_cooldown_ms"] / 1000,
        "FAIL_SAFE_THROTTLE": V["policy_defaults"]["fail_safe_throttle_ms"] / 1000,
    }
    assert {k: _documented(doc, k) for k in want} == want


def test_django_and_policy_leave_defaults_to_the_core() -> None:
    kwargs = cache_kwargs("", {})
    # Django's own choices; every other option is left to the Cache (the core).
    assert set(kwargs) == {"namespace", "ttl", "signing_key", "serializer", "policy", "fail_open"}
    assert kwargs["ttl"] is None and kwargs["fail_open"] is True
    assert policy({}).fail_safe_throttle is None
    assert Policy().fail_safe_throttle is None
