#!/usr/bin/env bash
# Run a command with PostgreSQL available to the tests:
#   STRATACACHE_PG_URL   $STRATACACHE_PG_URL if set, else the server on
#                        127.0.0.1:5432 if it answers (user postgres, trust
#                        auth, as on the project's machines) and has
#                        wal_level=logical (the change feed's tests need
#                        it), else a private cluster started here (initdb
#                        in a temp directory, a free loopback port,
#                        wal_level=logical; also with
#                        STRATACACHE_PG_PRIVATE=1).
# A private cluster is stopped on exit, whatever happens.
set -euo pipefail

if [ -n "${STRATACACHE_PG_URL:-}" ]; then
  exec "$@"
fi
if [ "${STRATACACHE_PG_PRIVATE:-}" != 1 ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432 -t 2 \
  && [ "$(psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc 'SHOW wal_level' 2>/dev/null)" = logical ]; then
  export STRATACACHE_PG_URL="postgresql://postgres@127.0.0.1:5432/postgres"
  echo "with-postgres: STRATACACHE_PG_URL=$STRATACACHE_PG_URL" >&2
  exec "$@"
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$bindir" ] || bindir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
if [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
  echo "error: PostgreSQL is needed for the tests: nothing answers on 127.0.0.1:5432 and initdb was not found." >&2
  echo "       Debian/Ubuntu: sudo apt-get install -y postgresql   macOS: brew install postgresql" >&2
  exit 1
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/stratacache-pg.XXXXXX")
run_as=()
# initdb and postgres refuse to run as root: use the postgres account then.
if [ "$(id -u)" = 0 ]; then
  chown postgres "$workdir"
  run_as=(runuser -u postgres --)
fi
started=0
cleanup() {
  if [ "$started" = 1 ]; then "${run_as[@]}" "$bindir/pg_ctl" -D "$workdir/data" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"${run_as[@]}" "$bindir/initdb" -D "$workdir/data" -U postgres --auth=trust >"$workdir/initdb.log" 2>&1
"${run_as[@]}" "$bindir/pg_ctl" -D "$workdir/data" -l "$workdir/log" -w -t 30 \
  -o "-p $port -k $workdir -c listen_addresses=127.0.0.1 -c wal_level=logical -c fsync=off" start >/dev/null
started=1
export STRATACACHE_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: STRATACACHE_PG_URL=$STRATACACHE_PG_URL (private cluster)" >&2
"$@"
