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

# Start redis-server; verify the server answering is ours (a port grabbed by
# someone else in between would otherwise go unnoticed).
#   start_server NAME CLI-ARGS -- SERVER-ARGS...   ("{port}" in either is
#   replaced by a fresh free port); sets STARTED_PORT.
start_server() {
  local name=$1 cli_tmpl=$2; shift 2; [ "$1" = "--" ] && shift
  local port pid cli args a
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    cli=${cli_tmpl//\{port\}/$port}
    args=()
    for a in "$@"; do args+=("${a//\{port\}/$port}"); done
    mkdir -p "$workdir/$name"
    redis-server --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$workdir/$name" --logfile "$workdir/$name/log" "${args[@]}" &
    pid=$!
    for _ in $(seq 1 200); do  # up to 10 s: a busy 2-core machine
      # shellcheck disable=SC2086
      if redis-cli $cli ping >/dev/null 2>&1; then break; fi
      sleep 0.05
    done
    # shellcheck disable=SC2086
    if [ "$(redis-cli $cli info server 2>/dev/null | tr -d '\r' | awk -F: '/^process_id:/{print $2}')" = "$pid" ]; then
      pids+=("$pid")
      STARTED_PORT=$port
      return 0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "error: could not start redis-server ($name); see $workdir/$name/log" >&2
  return 1
}

if [ -z "${REDIS_URL:-}" ]; then
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    export REDIS_URL="redis://127.0.0.1:6379"
  else
    start_server standalone "-p {port}" -- --port "{port}"
    export REDIS_URL="redis://127.0.0.1:$STARTED_PORT"
  fi
fi

if [ -z "${STRATACACHE_CLUSTER:-}" ]; then
  nodes=()
  for i in 1 2 3; do
    start_server "cluster$i" "-p {port}" -- --port "{port}" --cluster-enabled yes \
      --cluster-config-file "$workdir/nodes-$i.conf" --cluster-node-timeout 2000
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

# A server on a unix socket, and one speaking TLS with a throwaway CA.
if [ -z "${STRATACACHE_UNIX_URL:-}" ]; then
  sock="$workdir/redis.sock"
  start_server unix "-s $sock" -- --port 0 --unixsocket "$sock" --unixsocketperm 700
  export STRATACACHE_UNIX_URL="unix://$sock"
fi
if [ -z "${STRATACACHE_TLS_URL:-}" ]; then
  command -v openssl >/dev/null || { echo "error: openssl is needed to make the TLS test certificates" >&2; exit 1; }
  tls="$workdir/tls"; mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
      -subj "/CN=stratacache test CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
      -extfile ext 2>/dev/null
  )
  start_server tls "--tls --cacert $tls/ca.crt -p {port}" -- --port 0 --tls-port "{port}" \
    --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.crt" \
    --tls-auth-clients no
  export STRATACACHE_TLS_URL="rediss://127.0.0.1:$STARTED_PORT"
  export STRATACACHE_TLS_CA="$tls/ca.crt"
fi

echo "with-redis: REDIS_URL=$REDIS_URL STRATACACHE_CLUSTER=$STRATACACHE_CLUSTER" \
  "STRATACACHE_UNIX_URL=$STRATACACHE_UNIX_URL STRATACACHE_TLS_URL=$STRATACACHE_TLS_URL" >&2
"$@"
