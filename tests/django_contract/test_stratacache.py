"""Django's own cache contract (BaseCacheTests from Django's test suite)
run against stratacache, on every configuration.

Not collected by pytest: `scripts/django-contract.sh` copies this module
into the `cache` test package of Django's source distribution (same
version as installed) and runs it with Django's runtests.py.
"""

import os

from django.test import TestCase, override_settings

from .tests import BaseCacheTests, caches_setting_for_tests

_REDIS = os.environ["REDIS_URL"]
_CLUSTER = os.environ["STRATACACHE_CLUSTER"].split(",")
# Django's culling tests configure MAX_ENTRIES; stratacache's L1 is bounded
# by bytes instead (Django's RedisCache tests exclude them the same way).
_EXCLUDE = {"cull", "zero_cull"}


def _setting(location, **options):
    base = {
        "BACKEND": "stratacache.django.StrataCache",
        "LOCATION": location,
        "OPTIONS": {"NAMESPACE": f"djcontract-{os.getpid()}", "OP_TIMEOUT": 5.0, **options},
    }
    return caches_setting_for_tests(base=base, exclude=_EXCLUDE)


@override_settings(CACHES=_setting(""))
class StrataCacheL1OnlyTests(BaseCacheTests, TestCase):
    pass


@override_settings(CACHES=_setting(_REDIS))
class StrataCacheTieredTests(BaseCacheTests, TestCase):
    pass


@override_settings(CACHES=_setting(_CLUSTER, CLUSTER=True))
class StrataCacheClusterTests(BaseCacheTests, TestCase):
    pass


@override_settings(CACHES=_setting(_REDIS, L1=False))
class StrataCacheRedisOnlyTests(BaseCacheTests, TestCase):
    pass
