#!/usr/bin/env bash
# Failure-policy benchmark: what clients see through Courier when the upstream fails partly or
# wholly. The upstream is NGINX with a healthy path (/ok), one always 503 (/broken, a model that is
# down) and one always 500 (/bad-input). Courier runs a broker, WORKERS rule-engine workers and a
# gateway with the default circuit breaker (only the retry waits are shortened).
#   1. partial fault: three GETs to /broken (all their attempts 503), then wrk cycling over
#      /ok, /ok, /broken, /bad-input with CONNECTIONS connections for DURATION seconds. Counts
#      each answer: healthy 200s, the upstream's own 503/500, and Courier's "circuit open" 503s.
#   2. dead upstream: NGINX stopped (connections refused); sequential GETs until the first
#      "circuit open", with the latency of fast-failed requests; then NGINX restarted: seconds
#      until the first 200 and until every worker's circuit is closed again.
# Everything runs on 127.0.0.1 and is stopped on exit. See docs/performance.md.
#
# Usage: bench/fault/run.sh [--duration S]
# Environment (defaults in brackets): COURIER_BUILD_DIR [build]  WORKERS [2]
#   CONNECTIONS [64]  PORT_BASE [18500] (uses PORT_BASE+1..+4)  BENCH_OUT [run/bench-fault]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DURATION=5
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fault: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

BIN=${COURIER_BUILD_DIR:-build}
WORKERS=${WORKERS:-2}
CONNECTIONS=${CONNECTIONS:-64}
PORT_BASE=${PORT_BASE:-18500}
UP_PORT=$((PORT_BASE + 1)) GW_PORT=$((PORT_BASE + 2))
BR_FRONT=$((PORT_BASE + 3)) BR_BACK=$((PORT_BASE + 4)) ADMIN_PORT=$((PORT_BASE + 5))
OUT=${BENCH_OUT:-run/bench-fault}

BENCH_NAME=fault source bench/prerequisites.sh
for b in gateway/courier-gateway broker/courier-broker workers/courier-worker; do
  [[ -x $BIN/$b ]] || { echo "fault: $BIN/$b missing (build with scripts/setup.sh)" >&2; exit 1; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs
rm -rf "$LOGS" "$OUT/nginx"
mkdir -p "$LOGS" "$OUT/nginx"

declare -A PROC
ORDER=()
start() {  # start NAME CMD...: in the background, output to $LOGS/NAME.log
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PROC[$name]=$!
  ORDER+=("$name")
}
stop() {  # stop NAME: SIGTERM, then wait
  local pid=${PROC[$1]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PROC[$1]"
}
on_exit() {
  local i
  for ((i=${#ORDER[@]}-1; i>=0; i--)); do stop "${ORDER[$i]}"; done
}
trap on_exit EXIT
trap 'exit 130' INT TERM

wait_until() {  # wait_until SECONDS CMD...: poll every 0.05 s
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "fault: timed out waiting for: $*" >&2; exit 1; }
    sleep 0.05
  done
}
services() { curl -fsS -m 2 "http://127.0.0.1:$ADMIN_PORT/services"; }
courier_ready() {
  services | jq -e --argjson n "$WORKERS" '.broker_connected and (.services["rule-engine"].workers >= $n)'
}
all_closed() {
  services | jq -e '[.services["rule-engine"].worker_list[] | .status.circuit] | all(. == "closed")'
}
now_ms() { date +%s%3N; }

start_nginx() {
  sed -e "s|@PREFIX@|$OUT/nginx|g" -e "s|@PORT@|$UP_PORT|g" bench/fault/nginx.conf >"$OUT/nginx/nginx.conf"
  start nginx "$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf"
  wait_until 10 curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$UP_PORT/health"
}

start_nginx
export RULE_ENGINE_URL=http://127.0.0.1:$UP_PORT AI_GM_URL=http://127.0.0.1:9
export PROXY_RETRY_MIN_WAIT=0.05 PROXY_RETRY_MAX_WAIT=0.2 COURIER_LOG_LEVEL=info
start broker "$BIN/broker/courier-broker" --frontend "tcp://127.0.0.1:$BR_FRONT" \
  --backend "tcp://127.0.0.1:$BR_BACK" --id fault
for ((n=1; n<=WORKERS; n++)); do
  start "worker-$n" "$BIN/workers/courier-worker" --service rule-engine \
    --broker "tcp://127.0.0.1:$BR_BACK" --id "fault-$n"
done
start gateway "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GW_PORT" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --broker "tcp://127.0.0.1:$BR_FRONT" --threads 1
wait_until 15 courier_ready
GW=http://127.0.0.1:$GW_PORT

echo "== 1. partial fault: one path always 503, one always 500, one healthy ($WORKERS workers)"
for i in 1 2 3; do
  curl -s -o /dev/null -w "  GET /broken -> %{http_code}, X-Courier-Attempts %header{x-courier-attempts}\n" \
    "$GW/rule-engine/broken"
done
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/fault/mix.lua "$GW" >"$OUT/mix.txt"
sed -n 's/^count /  /p' "$OUT/mix.txt"
ok=$(awk '$1=="count" && $2=="ok_200" {print $3}' "$OUT/mix.txt")
open=$(awk '$1=="count" && $2=="circuit_open_503" {print $3}' "$OUT/mix.txt")
echo "  requests/s: $(awk '/Requests\/sec/ {print $2}' "$OUT/mix.txt")"
echo "  healthy path answered 200: $ok; fast-failed \"circuit open\": $open"

echo "== 2. dead upstream (connections refused), then back"
# The window still holds phase 1's successes: the circuit opens once failures reach the rate among
# the window's attempts, at most circuit_window (10 s) after the upstream died.
stop nginx
died=$(now_ms) first_open_ms=-1 requests=0 fast=()
while (( $(now_ms) - died < 20000 )); do
  line=$(curl -s -o "$OUT/body" -w "%{http_code} %{time_total}" "$GW/rule-engine/ok")
  requests=$((requests + 1))
  if grep -q "circuit open" "$OUT/body"; then
    ((first_open_ms < 0)) && first_open_ms=$(( $(now_ms) - died ))
    fast+=("$(awk '{printf "%.2f", $2 * 1000}' <<<"$line")")
    ((${#fast[@]} >= 20)) && break
  fi
  sleep 0.02
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
echo "  first \"circuit open\" ${first_open_ms} ms after the upstream died ($requests requests, one per 20 ms)"
echo "  fast-failed requests: median latency $(median "${fast[@]}") ms over ${#fast[@]}"
back=$(now_ms)
start_nginx
wait_until 30 curl -fsS -m 2 -o /dev/null "$GW/rule-engine/ok"
first_ok=$(now_ms)
# Probes need traffic: keep sending while waiting for every worker's circuit to close, four at a
# time (sequential requests would all go to the first of equally idle workers).
probe_and_check() {
  curl -s -Z -m 2 -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
    "$GW/rule-engine/ok" "$GW/rule-engine/ok" "$GW/rule-engine/ok" "$GW/rule-engine/ok"
  all_closed
}
wait_until 30 probe_and_check
closed=$(now_ms)
echo "  upstream back: first 200 after $(( (first_ok - back) )) ms, every circuit closed after $(( (closed - back) )) ms"
echo "  worker log lines:"
grep -h "circuit" "$LOGS"/worker-*.log | sed 's/^/    /' | head -20
