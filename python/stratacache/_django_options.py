"""The Django backend's configuration: OPTIONS names and values (errors
name the option), the native cache's arguments, the read-through policy,
and the system check (``stratacache.E001`` / ``W001``). Used by
:mod:`stratacache.django`."""

from __future__ import annotations

import math
from typing import Any, Callable

from django.core.exceptions import ImproperlyConfigured

from . import _native
from ._loading import Policy
from .exceptions import StrataCacheError
from .serializers import get_serializer

__all__ = ["check_caches"]


def _policy(opts: dict[str, Any]) -> Policy:
    """The read-through policy of a CACHES entry's OPTIONS."""

    def num(name: str) -> float | None:
        return _typed(opts, name, float, None)  # type: ignore[no-any-return]

    on_wait = opts.get("ON_WAIT_TIMEOUT", "load")
    if str(on_wait).lower() not in ("load", "fail"):
        raise ImproperlyConfigured(f"OPTIONS['ON_WAIT_TIMEOUT'] must be 'load' or 'fail', not {on_wait!r}")
    return Policy(
        allow_stale=_typed(opts, "STALE_WHILE_REVALIDATE", bool, False),
        grace=_typed(opts, "GRACE", float, 0.0),
        early_refresh=num("EARLY_REFRESH"),
        refresh_ahead=num("REFRESH_AHEAD"),
        fail_safe=_typed(opts, "FAIL_SAFE", bool, False),
        fail_safe_throttle=num("FAIL_SAFE_THROTTLE"),
        soft_timeout=num("SOFT_TIMEOUT"),
        hard_timeout=num("HARD_TIMEOUT"),
        on_wait_timeout=str(opts.get("ON_WAIT_TIMEOUT", "load")).lower(),  # type: ignore[arg-type]
        none_ttl=num("NONE_TTL"),
    )


#: Every OPTIONS key this backend reads.
_OPTION_KEYS = frozenset(
    {
        "NAMESPACE", "CLUSTER", "L1", "L1_MAX_BYTES", "L1_MEMO_BYTES", "SERIALIZER", "COMPRESS_THRESHOLD",
        "MAX_VALUE_BYTES", "SIGN", "SIGNING_KEY", "CONNECT_TIMEOUT", "SOCKET_TIMEOUT", "OP_TIMEOUT",
        "WAIT_TIMEOUT", "IGNORE_EXCEPTIONS", "GRACE", "EARLY_REFRESH", "REFRESH_AHEAD", "TTL_JITTER",
        "STALE_WHILE_REVALIDATE", "FAIL_SAFE", "FAIL_SAFE_THROTTLE", "SOFT_TIMEOUT", "HARD_TIMEOUT",
        "ON_WAIT_TIMEOUT", "NONE_TTL", "FLEET_LEASE", "LEASE_TTL", "BREAKER_THRESHOLD", "BREAKER_COOLDOWN",
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


def _options(params: dict[str, Any]) -> dict[str, Any]:
    """OPTIONS, upper-cased; an unknown key raises ImproperlyConfigured
    naming it and the nearest valid one (a mistyped option silently ignored
    would leave, e.g., a password unused)."""
    import difflib

    opts = {str(k).upper(): v for k, v in (params.get("OPTIONS") or {}).items()}
    for k in opts:
        if k in _OPTION_KEYS:
            continue
        if k in _FOREIGN_KEYS:
            raise ImproperlyConfigured(f"OPTIONS[{k!r}] is not a stratacache option: {_FOREIGN_KEYS[k]}")
        near = difflib.get_close_matches(k, _OPTION_KEYS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ImproperlyConfigured(f"unknown OPTIONS key {k!r}{hint}; the options are documented in stratacache.django")
    return opts


def _typed(opts: dict[str, Any], name: str, kind: Callable[[Any], Any], default: Any) -> Any:
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


def _native_kwargs(
    server: str | list[str] | tuple[str, ...], opts: dict[str, Any], key_prefix: str = ""
) -> dict[str, Any]:
    """The native cache's arguments for a CACHES entry (raises on bad input).
    An option not given is ``None``: the core's default."""
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
    signing_key = opts.get("SIGNING_KEY")
    if signing_key is None and opts.get("SIGN", True):
        from django.utils.crypto import salted_hmac

        signing_key = salted_hmac("stratacache.django.signing", "entry-signing-key").digest()
    if isinstance(signing_key, str):
        signing_key = signing_key.encode()
    return {
        "namespace": _namespace(opts, key_prefix),
        "redis_url": redis_url,
        "cluster": cluster,
        "l1": _typed(opts, "L1", bool, None),
        "l1_max_bytes": _typed(opts, "L1_MAX_BYTES", int, None),
        "l1_memo_bytes": _typed(opts, "L1_MEMO_BYTES", int, None),
        "default_ttl": math.inf,  # every call passes its own TTL
        "compress_threshold": _typed(opts, "COMPRESS_THRESHOLD", int, None),
        "max_value_bytes": _typed(opts, "MAX_VALUE_BYTES", int, None),
        "signing_key": signing_key or None,
        "connect_timeout": _typed(opts, "CONNECT_TIMEOUT", float, None),
        "op_timeout": _typed(opts, "OP_TIMEOUT", float, opts.get("SOCKET_TIMEOUT")),
        "wait_timeout": _typed(opts, "WAIT_TIMEOUT", float, None),
        "ttl_jitter": _typed(opts, "TTL_JITTER", float, None),
        "fleet_lease": _typed(opts, "FLEET_LEASE", bool, None),
        "lease_ttl": _typed(opts, "LEASE_TTL", float, None),
        "breaker_threshold": _typed(opts, "BREAKER_THRESHOLD", int, None),
        "breaker_cooldown": _typed(opts, "BREAKER_COOLDOWN", float, None),
    }


def check_caches(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Django system check for every stratacache entry of ``settings.CACHES``.

    Registered by the ``stratacache`` app (add ``"stratacache"`` to
    ``INSTALLED_APPS``); runs without connecting to Redis.
    """
    from django.conf import settings
    from django.core import checks
    from django.utils.module_loading import import_string

    messages: list[Any] = []
    seen: dict[tuple[str, str], str] = {}
    for alias, config in settings.CACHES.items():
        try:
            backend = import_string(config.get("BACKEND", ""))
        except ImportError:
            continue
        from .django import StrataCache

        if not (isinstance(backend, type) and issubclass(backend, StrataCache)):
            continue
        try:
            opts = _options(config)
            get_serializer(opts.get("SERIALIZER", "pickle"))
            _policy(opts)
            kwargs_ = _native_kwargs(config.get("LOCATION", ""), opts, str(config.get("KEY_PREFIX", "") or ""))
            _native.Cache(**kwargs_)
        except (StrataCacheError, ImproperlyConfigured, ValueError, TypeError) as e:
            messages.append(
                checks.Error(
                    f"CACHES[{alias!r}] is not a valid stratacache configuration: {e}",
                    hint="See the OPTIONS documented in stratacache/django.py.",
                    obj=f"CACHES[{alias!r}]",
                    id="stratacache.E001",
                )
            )
            continue
        where = (str(kwargs_["redis_url"] or kwargs_["cluster"] or "in-process"), kwargs_["namespace"])
        if where in seen:
            messages.append(
                checks.Warning(
                    f"CACHES[{alias!r}] and CACHES[{seen[where]!r}] use the same Redis location and NAMESPACE "
                    f"{where[1]!r}: they share entries and clear() on one clears both.",
                    hint="Give each alias its own OPTIONS['NAMESPACE'].",
                    obj=f"CACHES[{alias!r}]",
                    id="stratacache.W001",
                )
            )
        else:
            seen[where] = alias
    return messages
