#!/usr/bin/env bash
# `make run`: a working local stack in the foreground. Ctrl-C stops everything.
#   - Redis: HOOKLINE__REDIS__URL if set, else a private redis-server (AOF on) in .run/redis on port 6390.
#   - api-gateway on :8080 (ops listener :9094; 9090 is often a local Prometheus), event-consumer / delivery-worker / cleanup ops listeners on
#     :9091-9093.
#   - Settings: config/default.toml, then config/dev.toml (HOOKLINE_CONFIG), then HOOKLINE__* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run
mkdir -p "$RUN/redis"
pids=()
redis_pid=""
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping…"
  # The services first, Redis last: a draining worker still writes its in-flight outcomes.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$redis_pid" ]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
trap cleanup INT TERM EXIT

if [ -z "${HOOKLINE__REDIS__URL:-}" ]; then
  port=${HOOKLINE_DEV_REDIS_PORT:-6390}
  # In a session of its own: a terminal's Ctrl-C signals the whole foreground process group at once, and
  # Redis must outlive the draining services; only cleanup() above stops it, after they have exited.
  setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$RUN/redis" --appendonly yes \
    --maxmemory-policy noeviction --save '' >"$RUN/redis.log" 2>&1 &
  redis_pid=$!
  export HOOKLINE__REDIS__URL="redis://127.0.0.1:$port"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "redis-server started on $HOOKLINE__REDIS__URL (data in $RUN/redis)"
fi

cargo build -q --workspace --bins
export HOOKLINE_CONFIG="${HOOKLINE_CONFIG:-config/dev.toml}"
bin=target/debug
HOOKLINE__API__LISTEN=127.0.0.1:8080 HOOKLINE__OPS__LISTEN=127.0.0.1:9094 "$bin/api-gateway" &
pids+=($!)
HOSTNAME=local-consumer HOOKLINE__OPS__LISTEN=127.0.0.1:9091 "$bin/event-consumer" &
pids+=($!)
HOSTNAME=local-worker HOOKLINE__OPS__LISTEN=127.0.0.1:9092 "$bin/delivery-worker" &
pids+=($!)
if [ -x "$bin/cleanup" ]; then
  HOSTNAME=local-cleanup HOOKLINE__OPS__LISTEN=127.0.0.1:9093 "$bin/cleanup" &
  pids+=($!)
fi

sleep 1
cat <<MSG

Hookline is running.
  API            http://127.0.0.1:8080   (health: /healthz, readiness: /readyz)
  Console        http://127.0.0.1:8080/console/   (sign in with the token that make -s token prints)
  api-gateway    http://127.0.0.1:9094/metrics
  event-consumer http://127.0.0.1:9091/metrics
  delivery-worker http://127.0.0.1:9092/metrics
  cleanup        http://127.0.0.1:9093/metrics
  Redis          $HOOKLINE__REDIS__URL
  Admin token    make token      (or: target/debug/api-gateway dev-token --admin --secret <config/dev.toml jwt_secret>)
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" ${redis_pid:+"$redis_pid"} 2>/dev/null || true
