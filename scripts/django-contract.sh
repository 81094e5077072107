#!/usr/bin/env bash
# Run Django's own cache test suite (BaseCacheTests) against stratacache.
# Fetches the source distribution of the installed Django version from
# PyPI once (cached under target/django-src), adds our test module to its
# `cache` test package and runs Django's runtests.py on it.
# Usage: scripts/django-contract.sh PYTHON   (REDIS_URL, STRATACACHE_CLUSTER set)
set -euo pipefail
py=$(command -v "${1:?python interpreter}")
case "$py" in /*) ;; *) py="$PWD/$py" ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
version=$("$py" -c 'import django; print(django.get_version())')
cache_dir="$root/target/django-src"
src="$cache_dir/django-$version"
if [ ! -f "$src/tests/runtests.py" ]; then
  mkdir -p "$cache_dir"
  "$py" -m pip download -q --no-binary :all: --no-deps "django==$version" -d "$cache_dir"
  tar -xzf "$cache_dir/django-$version.tar.gz" -C "$cache_dir"
fi
cp "$root/tests/django_contract/test_stratacache.py" "$src/tests/cache/test_stratacache.py"
cd "$src/tests"
exec "$py" runtests.py cache.test_stratacache --settings=test_sqlite --parallel 1 --noinput
