#!/usr/bin/env bash
# Starts the local Courier topology: broker, gateway and workers per service, plus demo upstreams
# for any of RULE_ENGINE_URL / AI_GM_URL left unset. Ctrl-C stops it in order without losing a
# request: the gateway first (stops accepting, finishes in-flight requests), then the workers
# (drain), then the brokers, then the demo upstreams. A second Ctrl-C stops what is left at once.
#   WORKERS_PER_SERVICE=2  GATEWAY_PORT=8080  GATEWAY_ADMIN_PORT=9901  BROKER_PORT=5555 (and +1)
#   DEMO_PORT=8031 (and +1)  DEMO_AI_GM_LATENCY=uniform:200:800 (ms per AI GM call)
#   BROKERS=1 (more: broker k uses BROKER_PORT+2k and +2k+1; gateway and workers use them all)
#   EMBEDDED_BROKER=1: no broker process; the gateway runs the broker itself
#            (gateway.embedded_broker, docs/operations.md), workers connect to BROKER_PORT+1
#   CURVE=1 (broker links authenticated and encrypted; keys made on first start in run/keys;
#            CURVE=0: without, which the broker allows on loopback only)
#   COURIER_BUILD_DIR=build  COURIER_RUN_DIR=run (logs and keys)
#   COURIER_UP_SKIP_BUILD=1: use the binaries already in COURIER_BUILD_DIR (no apt, no build)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${COURIER_BUILD_DIR:-build}
if [[ "${COURIER_UP_SKIP_BUILD:-0}" == 0 ]]; then
  # Only the binaries started here, not the tests and benchmarks.
  COURIER_BUILD_TARGETS="courier-broker courier-gateway courier-worker courier-demo-upstream courier-keys" \
    scripts/setup.sh
fi

GATEWAY_PORT=${GATEWAY_PORT:-8080}
GATEWAY_ADMIN_PORT=${GATEWAY_ADMIN_PORT:-9901}
BROKER_PORT=${BROKER_PORT:-5555}
DEMO_PORT=${DEMO_PORT:-8031}
WORKERS=${WORKERS_PER_SERVICE:-2}
BROKERS=${BROKERS:-1}
RUN_DIR=${COURIER_RUN_DIR:-run}
LOGS=$RUN_DIR/logs
mkdir -p "$LOGS"

broker_keys=(); gateway_keys=(); worker_keys=()
if [[ "${CURVE:-1}" != 0 ]]; then
  KEYS=$RUN_DIR/keys
  "$BIN/keys/courier-keys" init "$KEYS" | sed 's/^/  keys: /'
  broker_keys=(--curve-secret-key-file "$KEYS/broker.key" --curve-gateway-keys "$KEYS/gateways.authorized"
               --curve-worker-keys "$KEYS/workers.authorized")
  gateway_keys=(--curve-secret-key-file "$KEYS/gateway.key" --curve-broker-key-file "$KEYS/broker.pub")
  worker_keys=(--curve-secret-key-file "$KEYS/worker.key" --curve-broker-key-file "$KEYS/broker.pub")
fi

# Stop groups, in stop order.
gateway_pids=(); worker_pids=(); broker_pids=(); demo_pids=()
all_pids() { echo "${gateway_pids[@]}" "${worker_pids[@]}" "${broker_pids[@]}" "${demo_pids[@]}"; }

stop_group() {  # stop_group NAME PID...: SIGTERM them, wait until every one has exited
  local name=$1; shift
  (($#)) || return 0
  local started=$SECONDS
  kill -TERM "$@" 2>/dev/null || true
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
  echo "  $name stopped ($((SECONDS - started)) s)"
}

force_stop() {
  trap - INT TERM
  echo "stopping the rest at once"
  kill -KILL $(all_pids) 2>/dev/null || true
  exit 130
}

stop_all() {
  local status=$?
  trap - EXIT
  trap force_stop INT TERM
  echo
  echo "stopping (gateway first; Ctrl-C again to stop at once)..."
  # Each waits for the previous: the gateway's in-flight requests still have workers, a broker
  # and upstreams, and draining workers still have their upstreams.
  stop_group gateway "${gateway_pids[@]}"
  stop_group workers "${worker_pids[@]}"
  stop_group brokers "${broker_pids[@]}"
  stop_group "demo upstreams" "${demo_pids[@]}"
  echo "stopped."
  exit "$status"
}
trap 'exit 0' INT TERM  # through the EXIT trap: stop_all
trap stop_all EXIT

start() {  # start GROUP NAME CMD...
  local group=$1 name=$2; shift 2
  # A session of its own: a terminal's Ctrl-C reaches only this script, which stops the
  # processes in order (whatever a binary does with SIGINT); stop_all then waits for each group.
  setsid "$@" >"$LOGS/$name.log" 2>&1 &
  local -n pids=${group}_pids
  pids+=($!)
  echo "  $name (pid $!) -> $LOGS/$name.log"
}

echo "starting Courier:"
if [[ -z "${RULE_ENGINE_URL:-}" ]]; then
  start demo demo-rule-engine "$BIN/demo/courier-demo-upstream" --role rule-engine \
    --listen "127.0.0.1:$DEMO_PORT"
  export RULE_ENGINE_URL="http://127.0.0.1:$DEMO_PORT"
fi
if [[ -z "${AI_GM_URL:-}" ]]; then
  start demo demo-ai-gm "$BIN/demo/courier-demo-upstream" --role ai-gm \
    --listen "127.0.0.1:$((DEMO_PORT + 1))" --latency-dist "${DEMO_AI_GM_LATENCY:-uniform:200:800}"
  export AI_GM_URL="http://127.0.0.1:$((DEMO_PORT + 1))"
fi
frontends=""; backends=""; gateway_link=()  # set below
if [[ "${EMBEDDED_BROKER:-0}" != 0 ]]; then
  ((BROKERS == 1)) || { echo "EMBEDDED_BROKER=1 runs one broker, in the gateway: unset BROKERS" >&2; exit 2; }
  BROKERS=0
  backends="tcp://127.0.0.1:$((BROKER_PORT + 1))"
  # The broker's settings through its environment variables (the gateway's flags are its own);
  # its link from the gateway is in-process and needs no keys.
  export COURIER_BROKER_BACKEND=$backends COURIER_BROKER_ID=broker-1
  if ((${#broker_keys[@]})); then
    export COURIER_BROKER_CURVE_SECRET_KEY_FILE="$KEYS/broker.key"
    export COURIER_BROKER_CURVE_GATEWAY_KEYS_FILE="$KEYS/gateways.authorized"
    export COURIER_BROKER_CURVE_WORKER_KEYS_FILE="$KEYS/workers.authorized"
  fi
  gateway_link=(--embedded-broker true)
fi
for ((k=0; k<BROKERS; k++)); do
  front="tcp://127.0.0.1:$((BROKER_PORT + 2 * k))"; back="tcp://127.0.0.1:$((BROKER_PORT + 2 * k + 1))"
  start broker "broker-$((k + 1))" "$BIN/broker/courier-broker" --frontend "$front" --backend "$back" \
    --id "broker-$((k + 1))" "${broker_keys[@]}"
  frontends+="${frontends:+,}$front"; backends+="${backends:+,}$back"
done
((${#gateway_link[@]})) || gateway_link=(--broker "$frontends" "${gateway_keys[@]}")
for service in rule-engine ai-gm; do
  for ((n=1; n<=WORKERS; n++)); do
    start worker "worker-$service-$n" "$BIN/workers/courier-worker" --service "$service" \
      --broker "$backends" --id "$service-$n" "${worker_keys[@]}"
  done
done
# The admin port (/metrics, /services, /dashboard) through its environment variable.
COURIER_GATEWAY_ADMIN_LISTEN="127.0.0.1:$GATEWAY_ADMIN_PORT" \
  start gateway gateway "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GATEWAY_PORT" \
  "${gateway_link[@]}"

ready=""
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/readyz" 2>/dev/null; then ready=1; break; fi
  for pid in $(all_pids); do
    kill -0 "$pid" 2>/dev/null || { echo "a process exited early; see $LOGS/" >&2; exit 1; }
  done
  sleep 0.1
done
[[ -n "$ready" ]] || { echo "not ready after 10 s; see $LOGS/" >&2; exit 1; }

cat <<MSG

Courier is up (Rule Engine: $RULE_ENGINE_URL, AI GM: $AI_GM_URL). Try:
  curl http://127.0.0.1:$GATEWAY_PORT/rule-engine/health
  curl -X POST http://127.0.0.1:$GATEWAY_PORT/ai-gm/api/v1/game/turn -d '{"action":"look"}'
  curl http://127.0.0.1:$GATEWAY_ADMIN_PORT/services     (admin port: also /metrics, /dashboard)
  and in a browser: http://127.0.0.1:$GATEWAY_ADMIN_PORT/dashboard
Press Ctrl-C to stop.
MSG
wait -n $(all_pids) || true
echo "a process exited; see $LOGS/" >&2
exit 1
