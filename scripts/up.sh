#!/usr/bin/env bash
# Starts the local Courier topology: broker, gateway and workers per service, plus demo upstreams
# for any of RULE_ENGINE_URL / AI_GM_URL left unset. Ctrl-C stops everything it started.
#   WORKERS_PER_SERVICE=2  GATEWAY_PORT=8080  ADMIN_PORT=9901  BROKER_PORT=5555 (and +1)
#   DEMO_PORT=8031 (and +1)
#   BROKERS=1 (more: broker k uses BROKER_PORT+2k and +2k+1; gateway and workers use them all)
#   CURVE=1 (broker links authenticated and encrypted; keys made on first start in run/keys;
#            CURVE=0: without, which the broker allows on loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

BIN=${COURIER_BUILD_DIR:-build}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9901}
BROKER_PORT=${BROKER_PORT:-5555}
DEMO_PORT=${DEMO_PORT:-8031}
WORKERS=${WORKERS_PER_SERVICE:-2}
BROKERS=${BROKERS:-1}
LOGS=run/logs
mkdir -p "$LOGS"

broker_keys=(); gateway_keys=(); worker_keys=()
if [[ "${CURVE:-1}" != 0 ]]; then
  KEYS=run/keys
  "$BIN/keys/courier-keys" init "$KEYS" | sed 's/^/  keys: /'
  broker_keys=(--curve-secret-key-file "$KEYS/broker.key" --curve-gateway-keys "$KEYS/gateways.authorized"
               --curve-worker-keys "$KEYS/workers.authorized")
  gateway_keys=(--curve-secret-key-file "$KEYS/gateway.key" --curve-broker-key-file "$KEYS/broker.pub")
  worker_keys=(--curve-secret-key-file "$KEYS/worker.key" --curve-broker-key-file "$KEYS/broker.pub")
fi

pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping ${#pids[@]} processes..."
  # Reverse order: gateway first, upstreams last, so that draining workers can still finish.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped."
  exit 0
}
trap stop_all INT TERM EXIT

start() {  # start NAME CMD...
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  echo "  $name (pid $!) -> $LOGS/$name.log"
}

echo "starting Courier:"
if [[ -z "${RULE_ENGINE_URL:-}" ]]; then
  start demo-rule-engine "$BIN/demo/courier-demo-upstream" --role rule-engine --listen "127.0.0.1:$DEMO_PORT"
  export RULE_ENGINE_URL="http://127.0.0.1:$DEMO_PORT"
fi
if [[ -z "${AI_GM_URL:-}" ]]; then
  start demo-ai-gm "$BIN/demo/courier-demo-upstream" --role ai-gm --listen "127.0.0.1:$((DEMO_PORT + 1))" --latency-dist uniform:200:800
  export AI_GM_URL="http://127.0.0.1:$((DEMO_PORT + 1))"
fi
frontends=""; backends=""
for ((k=0; k<BROKERS; k++)); do
  front="tcp://127.0.0.1:$((BROKER_PORT + 2 * k))"; back="tcp://127.0.0.1:$((BROKER_PORT + 2 * k + 1))"
  start "broker-$((k + 1))" "$BIN/broker/courier-broker" --frontend "$front" --backend "$back" --id "broker-$((k + 1))" \
    "${broker_keys[@]}"
  frontends+="${frontends:+,}$front"; backends+="${backends:+,}$back"
done
for service in rule-engine ai-gm; do
  for ((n=1; n<=WORKERS; n++)); do
    start "worker-$service-$n" "$BIN/workers/courier-worker" --service "$service" \
      --broker "$backends" --id "$service-$n" "${worker_keys[@]}"
  done
done
start gateway "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GATEWAY_PORT" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --broker "$frontends" \
  "${gateway_keys[@]}"

ready=""
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/readyz" 2>/dev/null; then ready=1; break; fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a process exited early; see $LOGS/" >&2; exit 1; }
  done
  sleep 0.1
done
[[ -n "$ready" ]] || { echo "not ready after 10 s; see $LOGS/" >&2; exit 1; }

cat <<MSG

Courier is up (Rule Engine: $RULE_ENGINE_URL, AI GM: $AI_GM_URL). Try:
  curl http://127.0.0.1:$GATEWAY_PORT/rule-engine/health
  curl -X POST http://127.0.0.1:$GATEWAY_PORT/ai-gm/api/v1/game/turn -d '{"action":"look"}'
  curl http://127.0.0.1:$ADMIN_PORT/services      # admin listener: /services, /metrics
  and in a browser: http://127.0.0.1:$ADMIN_PORT/dashboard
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see $LOGS/" >&2
exit 1
