"""The Django backend's configuration: OPTIONS names and values (errors
name the option), the :class:`stratacache.Cache` arguments they make, and
the read-through policy. An option not given is left out, so the Cache's
(the core's) default applies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .._loading import Policy
from .._native import nearest_name
from ..serializers import get_serializer

__all__ = ["cache_kwargs", "options", "policy", "typed"]


def policy(opts: dict[str, Any]) -> Policy:
    """The read-through policy of a CACHES entry's OPTIONS."""

    def num(name: str) -> float | None:
        return typed(opts, name, float, None)  # type: ignore[no-any-return]

    on_wait = opts.get("ON_WAIT_TIMEOUT", "load")
    if str(on_wait).lower() not in ("load", "fail"):
        raise ImproperlyConfigured(f"OPTIONS['ON_WAIT_TIMEOUT'] must be 'load' or 'fail', not {on_wait!r}")
    return Policy(
        allow_stale=typed(opts, "STALE_WHILE_REVALIDATE", bool, False),
        grace=typed(opts, "GRACE", float, 0.0),
        early_refresh=num("EARLY_REFRESH"),
        refresh_ahead=num("REFRESH_AHEAD"),
        fail_safe=typed(opts, "FAIL_SAFE", bool, False),
        fail_safe_throttle=num("FAIL_SAFE_THROTTLE"),
        soft_timeout=num("SOFT_TIMEOUT"),
        hard_timeout=num("HARD_TIMEOUT"),
        on_wait_timeout=str(opts.get("ON_WAIT_TIMEOUT", "load")).lower(),  # type: ignore[arg-type]
        none_ttl=num("NONE_TTL"),
    )


#: Every OPTIONS key this backend reads.
_OPTION_KEYS = frozenset(
    {
        "NAMESPACE", "CLUSTER", "L1", "L1_MAX_BYTES", "L1_MEMO_BYTES", "COPY", "SERIALIZER", "COMPRESS_THRESHOLD",
        "MAX_VALUE_BYTES", "SIGN", "SIGNING_KEY", "CONNECT_TIMEOUT", "SOCKET_TIMEOUT", "OP_TIMEOUT",
        "WAIT_TIMEOUT", "IGNORE_EXCEPTIONS", "GRACE", "EARLY_REFRESH", "REFRESH_AHEAD", "TTL_JITTER",
        "STALE_WHILE_REVALIDATE", "FAIL_SAFE", "FAIL_SAFE_THROTTLE", "SOFT_TIMEOUT", "HARD_TIMEOUT",
        "ON_WAIT_TIMEOUT", "NONE_TTL", "FLEET_LEASE", "TRACK_DEPENDENCIES", "LEASE_TTL", "BREAKER_THRESHOLD",
        "BREAKER_COOLDOWN", "EDGE_PURGE", "SENTINELS",
    }
)  # fmt: skip

#: Options of django-redis and Django's RedisCache that mean something else here.
_FOREIGN_KEYS = {
    "PASSWORD": "the password goes in LOCATION: redis://:PASSWORD@host:6379/0 (or redis://USER:PASSWORD@...)",
    "USERNAME": "the user name goes in LOCATION: redis://USER:PASSWORD@host:6379/0",
    "DB": "the database number goes in LOCATION: redis://host:6379/DB",
    "SOCKET_CONNECT_TIMEOUT": "use CONNECT_TIMEOUT (seconds)",
    "CLIENT_CLASS": "stratacache has no client classes: remove it",
    "CONNECTION_POOL_KWARGS": "connections are multiplexed, not pooled: remove it",
    "CONNECTION_POOL_CLASS": "connections are multiplexed, not pooled: remove it",
    "POOL_CLASS": "connections are multiplexed, not pooled: remove it",
    "PARSER_CLASS": "there is no parser to choose: remove it",
    "COMPRESSOR": "values are zstd-compressed from COMPRESS_THRESHOLD bytes: use that",
    "PICKLE_VERSION": "pickle uses the highest protocol: remove it",
    "REDIS_CLIENT_CLASS": "stratacache has no client classes: remove it",
    "REDIS_CLIENT_KWARGS": "use the documented OPTIONS instead",
}


def options(params: dict[str, Any]) -> dict[str, Any]:
    """OPTIONS, upper-cased; an unknown key raises ImproperlyConfigured
    naming it and the nearest valid one (a mistyped option silently ignored
    would leave, e.g., a password unused)."""
    opts = {str(k).upper(): v for k, v in (params.get("OPTIONS") or {}).items()}
    for k in opts:
        if k in _OPTION_KEYS:
            continue
        if k in _FOREIGN_KEYS:
            raise ImproperlyConfigured(f"OPTIONS[{k!r}] is not a stratacache option: {_FOREIGN_KEYS[k]}")
        near = nearest_name(k, list(_OPTION_KEYS))
        hint = f" (did you mean {near!r}?)" if near else ""
        raise ImproperlyConfigured(f"unknown OPTIONS key {k!r}{hint}; the options are documented in stratacache.django")
    return opts


def typed(opts: dict[str, Any], name: str, kind: Callable[[Any], Any], default: Any) -> Any:
    """OPTIONS[name] converted by `kind`; the error names the option."""
    v = opts.get(name, default)
    if v is None:
        return None
    if kind is bool:
        if isinstance(v, bool):
            return v
        raise ImproperlyConfigured(f"OPTIONS[{name!r}] must be True or False, not {v!r}")
    try:
        out = kind(v)
    except (TypeError, ValueError, OverflowError):
        raise ImproperlyConfigured(f"OPTIONS[{name!r}] must be a {kind.__name__}, not {v!r}") from None
    if isinstance(out, (int, float)) and out < 0:
        raise ImproperlyConfigured(f"OPTIONS[{name!r}] must be >= 0, not {v!r}")
    return out


def _namespace(opts: dict[str, Any], key_prefix: str) -> str:
    """OPTIONS['NAMESPACE'], else one derived from KEY_PREFIX: two sites on
    one Redis database with different prefixes never share a namespace, so
    one's ``clear()`` cannot wipe the other."""
    if "NAMESPACE" in opts:
        return str(opts["NAMESPACE"])
    if not key_prefix:
        return "django"
    import hashlib
    import re

    if re.fullmatch(r"[A-Za-z0-9_.-]{1,56}", key_prefix):
        return f"django.{key_prefix}"
    return "django." + hashlib.sha256(key_prefix.encode()).hexdigest()[:16]


def _sentinel_url(location: str | None, sentinels: Any) -> str:
    """django-redis's Sentinel form, ``LOCATION = "redis://[:password@]SERVICE[/db]"``
    with ``OPTIONS["SENTINELS"] = [(host, port), ...]``, as the core's
    ``redis+sentinel://`` URL (which LOCATION may also give directly)."""
    if not location or "://" not in location:
        raise ImproperlyConfigured(
            "OPTIONS['SENTINELS'] needs LOCATION = 'redis://[:password@]SERVICE_NAME[/db]' (the master's name)"
        )
    scheme, rest = location.split("://", 1)
    if scheme not in ("redis", "rediss"):
        raise ImproperlyConfigured(f"OPTIONS['SENTINELS'] needs a redis:// or rediss:// LOCATION, not {scheme}://")
    userinfo, at, rest = rest.rpartition("@")
    service, _, db = rest.partition("/")
    try:
        if not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in sentinels):
            raise TypeError
        hosts = ",".join(f"{f'[{h}]' if ':' in str(h) else h}:{int(p)}" for h, p in sentinels)
    except (TypeError, ValueError):
        raise ImproperlyConfigured("OPTIONS['SENTINELS'] is a list of (host, port) pairs") from None
    return f"{scheme}+sentinel://{userinfo + at}{hosts}/{service}{'/' + db if db else ''}"


def cache_kwargs(
    server: str | list[str] | tuple[str, ...], opts: dict[str, Any], key_prefix: str = ""
) -> dict[str, Any]:
    """The :class:`stratacache.Cache` arguments of a CACHES entry (raises on
    bad input); options not given are left out (the core's defaults)."""
    if isinstance(server, (list, tuple)):
        locations = [str(s).strip() for s in server if str(s).strip()]
    else:
        locations = [s.strip() for s in str(server or "").split(",") if s.strip()]
    redis_url: str | None = None
    cluster: list[str] | None = None
    if opts.get("CLUSTER"):
        if not locations:
            raise ImproperlyConfigured("OPTIONS['CLUSTER'] needs seed URLs in LOCATION")
        cluster = locations
    elif len(locations) > 1:
        raise ImproperlyConfigured("LOCATION has several URLs; set OPTIONS['CLUSTER'] = True for a Redis Cluster")
    elif locations:
        redis_url = locations[0]
    if opts.get("SENTINELS"):
        redis_url = _sentinel_url(redis_url, opts["SENTINELS"])
    signing_key = opts.get("SIGNING_KEY")
    if signing_key is None and opts.get("SIGN", True):
        from django.utils.crypto import salted_hmac

        signing_key = salted_hmac("stratacache.django.signing", "entry-signing-key").digest()
    if isinstance(signing_key, str):
        signing_key = signing_key.encode()
    given = {
        "namespace": _namespace(opts, key_prefix),
        "redis_url": redis_url,
        "cluster": cluster,
        "l1": typed(opts, "L1", bool, None),
        "l1_max_bytes": typed(opts, "L1_MAX_BYTES", int, None),
        "l1_memo_bytes": typed(opts, "L1_MEMO_BYTES", int, None),
        "copy": typed(opts, "COPY", bool, None),
        "ttl": None,  # never: every call passes its own TTL
        "compress_threshold": typed(opts, "COMPRESS_THRESHOLD", int, None),
        "max_value_bytes": typed(opts, "MAX_VALUE_BYTES", int, None),
        "signing_key": signing_key or None,
        "connect_timeout": typed(opts, "CONNECT_TIMEOUT", float, None),
        "op_timeout": typed(opts, "OP_TIMEOUT", float, opts.get("SOCKET_TIMEOUT")),
        "wait_timeout": typed(opts, "WAIT_TIMEOUT", float, None),
        "ttl_jitter": typed(opts, "TTL_JITTER", float, None),
        "fleet_lease": typed(opts, "FLEET_LEASE", bool, None),
        "track_dependencies": typed(opts, "TRACK_DEPENDENCIES", bool, None),
        "lease_ttl": typed(opts, "LEASE_TTL", float, None),
        "breaker_threshold": typed(opts, "BREAKER_THRESHOLD", int, None),
        "breaker_cooldown": typed(opts, "BREAKER_COOLDOWN", float, None),
        "serializer": get_serializer(opts.get("SERIALIZER", "pickle")),
        "policy": policy(opts),
        "fail_open": typed(opts, "IGNORE_EXCEPTIONS", bool, True),
        "edge_purge": opts.get("EDGE_PURGE"),
    }
    return {k: v for k, v in given.items() if v is not None or k == "ttl"}
