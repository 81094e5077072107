"""Django cache backend.

.. code-block:: python

    CACHES = {
        "default": {
            "BACKEND": "stratacache.django.StrataCache",
            "LOCATION": "redis://127.0.0.1:6379/0",  # "" -> in-process only
            "TIMEOUT": 300,
            "KEY_PREFIX": "shop",
            "OPTIONS": {"L1_MAX_BYTES": 64 << 20},
        }
    }

OPTIONS (all optional, upper-case):

``NAMESPACE``            stratacache namespace; default ``"django"``, or
                         ``"django.<KEY_PREFIX>"`` when KEY_PREFIX is set (a
                         digest of it if it is not ``[A-Za-z0-9_.-]``).
                         ``clear()`` removes exactly this namespace's keys
                         (every VERSION): two sites on one Redis database
                         with different KEY_PREFIX never clear each other.
``CLUSTER``              ``True``: LOCATION is a list (or comma-separated string)
                         of Redis Cluster seed URLs.
``L1``                   ``False`` disables the in-process tier.
``L1_MAX_BYTES``         L1 capacity in bytes (default 64 MiB).
``L1_MEMO_BYTES``        the part of it that keeps decoded values for fast hits
                         (default a quarter; 0 turns it off).
``COPY``                 ``False``: an L1 hit returns the same object every time,
                         without a copy (faster; never mutate what ``get`` returns).
                         Not for an alias that ``cache_page`` / the cache
                         middleware or the cache session backend use: Django
                         mutates the responses and session dicts it reads.
``SERIALIZER``           ``"pickle"`` (default), ``"json"``, ``"msgpack"``, ``"raw"``.
``COMPRESS_THRESHOLD``   zstd-compress payloads of at least this many bytes (4096).
``MAX_VALUE_BYTES``      largest value accepted (32 MiB).
``SIGN``                 sign entries with HMAC-SHA256 (default ``True``); the key
                         is derived from ``SECRET_KEY`` (salted) unless
                         ``SIGNING_KEY`` is given. A signing reader never
                         unpickles an unsigned or forged entry.
``SIGNING_KEY``          explicit signing key (str or bytes).
``CONNECT_TIMEOUT``      seconds (1.0).  ``SOCKET_TIMEOUT`` / ``OP_TIMEOUT``: per
                         command, seconds (0.5).
``WAIT_TIMEOUT``         how long ``get_or_set`` waits for another caller's load (30).
``IGNORE_EXCEPTIONS``    fail-open (default ``True``, as django-redis users expect):
                         Redis errors are logged (one line per kind per 10 s,
                         with the count suppressed) and behave as misses /
                         failed writes; ``incr``/``decr`` raise ``ValueError``
                         as on a missing key. ``False`` raises them.

Unknown OPTIONS keys raise ``ImproperlyConfigured`` naming the key and the
nearest valid one (django-redis keys such as ``PASSWORD`` say where the
setting goes instead).
``GRACE``                seconds a value stays servable as stale after its TIMEOUT
                         (used by ``get_or_set(..., allow_stale=True)``); default 0.
``EARLY_REFRESH``        XFetch beta (e.g. 1.0) for ``get_or_set``: hot keys are
                         reloaded in the background shortly before they expire.
``REFRESH_AHEAD``        fraction of the TTL (e.g. 0.2): ``get_or_set`` refreshes
                         in the background once a value enters its last 20 %.
``TTL_JITTER``           shorten every TTL by a random fraction up to this (0-1),
                         so keys written together do not expire together.
``STALE_WHILE_REVALIDATE`` ``True``: ``get_or_set`` returns a stale value (within
                         ``GRACE``) at once and refreshes it in the background
                         (once per fleet). Per call: ``allow_stale=``.
``FAIL_SAFE``            ``True``: when the loader raises or exceeds
                         ``SOFT_TIMEOUT`` and a stale value (within ``GRACE``)
                         exists, serve it; after a failure it stays fresh for
                         ``FAIL_SAFE_THROTTLE`` seconds (30).
``SOFT_TIMEOUT``         seconds (fail-safe); ``HARD_TIMEOUT``: no caller of
                         ``get_or_set`` waits longer (stale value or
                         ``LoaderTimeoutError``; the load goes on).
``ON_WAIT_TIMEOUT``      after ``WAIT_TIMEOUT``: ``"load"`` (default) or ``"fail"``.
``NONE_TTL``             TTL for a ``None`` loaded by ``get_or_set`` (0: never
                         cached); default: like any value.
``FLEET_LEASE``          ``False`` turns off the fleet-wide lease (one loader
                         per key across every process sharing Redis; default on).
``TRACK_DEPENDENCIES``   ``False``: loaders do not collect what they read as
                         dependencies of what they build (default on).
``LEASE_TTL``            seconds a crashed loader's lease blocks others (5).
``BREAKER_THRESHOLD``    consecutive Redis failures that open the circuit breaker (5);
                         ``BREAKER_COOLDOWN``: seconds it skips Redis before probing (0.25).
``EDGE_PURGE``           edges (Varnish, Fastly, Cloudflare, CloudFront, Akamai, a
                         webhook) purged of every tag this process invalidates:
                         a list of dicts with a ``kind`` (none).

``close()`` is a no-op: Django calls it after every request, and the
connections here are long-lived multiplexed ones shared by every thread.

System checks: add ``"stratacache"`` to ``INSTALLED_APPS`` and ``manage.py
check`` reports a malformed entry (``stratacache.E001``, with the reason)
and two aliases sharing one namespace (``stratacache.W001``) without
touching Redis. Without the app, a malformed entry raises
``ImproperlyConfigured`` when the alias is first used.
"""

from __future__ import annotations

from .backend import StrataCache
from .checks import check_caches
from .pages import cache_page

__all__ = ["StrataCache", "cache_page", "check_caches"]
