#!/usr/bin/env bash
# Run a command with Redis available to the tests:
#   REDIS_URL            a standalone server: $REDIS_URL if set, else
#                        127.0.0.1:6379 if it answers, else one started here
#   STRATACACHE_CLUSTER  a 3-master Redis Cluster started here on free
#                        loopback ports (comma-separated seed URLs)
# Everything started here is stopped by PID on exit, whatever happens.
set -euo pipefail

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "error: redis-server and redis-cli are needed for the tests." >&2
  echo "       Debian/Ubuntu: sudo apt-get install -y redis-server   macOS: brew install redis" >&2
  exit 1
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/stratacache-redis.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Start redis-server on a free port; verify the server answering is ours
# (a port grabbed by someone else in between would otherwise go unnoticed).
start_server() { # name extra-args...
  local name=$1; shift
  local port pid
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    mkdir -p "$workdir/$name"
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$workdir/$name" --logfile "$workdir/$name/log" "$@" &
    pid=$!
    for _ in $(seq 1 100); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
      sleep 0.05
    done
    if [ "$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' | awk -F: '/^process_id:/{print $2}')" = "$pid" ]; then
      pids+=("$pid")
      STARTED_PORT=$port
      return 0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "error: could not start redis-server ($name) on a free port; see $workdir/$name/log" >&2
  return 1
}

if [ -z "${REDIS_URL:-}" ]; then
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    export REDIS_URL="redis://127.0.0.1:6379"
  else
    start_server standalone
    export REDIS_URL="redis://127.0.0.1:$STARTED_PORT"
  fi
fi

if [ -z "${STRATACACHE_CLUSTER:-}" ]; then
  nodes=()
  for i in 1 2 3; do
    start_server "cluster$i" --cluster-enabled yes --cluster-config-file "$workdir/nodes-$i.conf" \
      --cluster-node-timeout 2000
    nodes+=("127.0.0.1:$STARTED_PORT")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$workdir/create.log" 2>&1 \
    || { cat "$workdir/create.log" >&2; exit 1; }
  for _ in $(seq 1 200); do
    ok=1
    for n in "${nodes[@]}"; do
      redis-cli -h "${n%:*}" -p "${n#*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.05
  done
  [ "$ok" = 1 ] || { echo "error: Redis Cluster did not become ready" >&2; exit 1; }
  STRATACACHE_CLUSTER=$(printf 'redis://%s,' "${nodes[@]}")
  export STRATACACHE_CLUSTER=${STRATACACHE_CLUSTER%,}
fi

echo "with-redis: REDIS_URL=$REDIS_URL STRATACACHE_CLUSTER=$STRATACACHE_CLUSTER" >&2
"$@"
