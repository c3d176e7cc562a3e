#!/usr/bin/env bash
# Heap profile of the broker, the worker and the gateway under scenario 2 of bench/load/run.sh (a
# slow upstream, many connections in flight): which allocations are live at the peak, per process.
# Runs everything on 127.0.0.1 with heaptrack (Debian package `heaptrack`), stops it all on exit,
# and prints each process's peak heap and its largest peak consumers. See docs/performance.md.
# With --allocations: a fast upstream under closed-loop load instead (64 connections, 3 s), and
# the heap allocations per proxied request of the gateway and the worker: each one's count
# divided by the calls of a function that allocates exactly once per request (heaptrack may drop
# the last moments of a trace, so wrk's own count would overstate the requests it saw).
#
# Usage: bench/heap_profile.sh [--allocations] [--connections N] [--seconds S]
#   COURIER_BUILD_DIR [build]  PORT_BASE [18500] (uses PORT_BASE+1..+4)  HEAP_OUT [run/heap]
set -euo pipefail
cd "$(dirname "$0")/.."

ALLOCATIONS=false
CONNECTIONS=
SECONDS_LOAD=
while (($#)); do
  case $1 in
    --allocations) ALLOCATIONS=true; shift ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --seconds) SECONDS_LOAD=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "heap_profile: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if $ALLOCATIONS; then
  CONNECTIONS=${CONNECTIONS:-64} SECONDS_LOAD=${SECONDS_LOAD:-3} LATENCY_MS=0
else
  CONNECTIONS=${CONNECTIONS:-2000} SECONDS_LOAD=${SECONDS_LOAD:-8} LATENCY_MS=1000
fi

for tool in heaptrack heaptrack_print wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "heap_profile: $tool is missing; install it with: apt-get install heaptrack wrk curl" >&2
    exit 1
  }
done
BIN=${COURIER_BUILD_DIR:-build}
for b in broker/courier-broker workers/courier-worker gateway/courier-gateway \
         demo/courier-demo-upstream; do
  [[ -x $BIN/$b ]] || { echo "heap_profile: $BIN/$b missing; build first (scripts/setup.sh)" >&2; exit 1; }
done
BASE=${PORT_BASE:-18500}
UP=$((BASE + 1)) FRONT=$((BASE + 2)) BACK=$((BASE + 3)) GW=$((BASE + 4))
OUT=${HEAP_OUT:-run/heap}
mkdir -p "$OUT"
rm -f "$OUT"/heaptrack.*.zst
ulimit -n $((CONNECTIONS * 3 + 1000)) 2>/dev/null || true

pids=()
# The heaptrack wrapper waits for the program it runs: signal the programs themselves (they stop
# gracefully on SIGTERM), then wait for the wrappers, which write the profiles.
cleanup() {
  local b
  for b in broker/courier-broker workers/courier-worker gateway/courier-gateway \
           demo/courier-demo-upstream; do
    pkill -TERM -f "^$BIN/$b .*127.0.0.1:($UP|$FRONT|$BACK|$GW)" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $UP $FRONT $BACK $GW; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "heap_profile: 127.0.0.1:$port is in use; choose other ports with PORT_BASE" >&2
    exit 1
  fi
done
export RULE_ENGINE_URL=http://127.0.0.1:$UP AI_GM_URL=http://127.0.0.1:9 COURIER_LOG_LEVEL=warn COURIER_ACCESS_LOG=false
export COURIER_MAX_CONNECTIONS=$((CONNECTIONS + 1000)) COURIER_MAX_QUEUE=$((CONNECTIONS * 2))
"$BIN/demo/courier-demo-upstream" --role rule-engine --listen "127.0.0.1:$UP" --threads 1 \
  --latency-ms "$LATENCY_MS" --log-level warn >"$OUT/upstream.log" 2>&1 & pids+=($!)
heaptrack -o "$OUT/heaptrack.broker" "$BIN/broker/courier-broker" --frontend "tcp://127.0.0.1:$FRONT" \
  --backend "tcp://127.0.0.1:$BACK" --id heap >"$OUT/broker.log" 2>&1 & pids+=($!)
heaptrack -o "$OUT/heaptrack.worker" "$BIN/workers/courier-worker" --service rule-engine \
  --broker "tcp://127.0.0.1:$BACK" --id heap-1 --concurrency $((CONNECTIONS * 2)) \
  >"$OUT/worker.log" 2>&1 & pids+=($!)
heaptrack -o "$OUT/heaptrack.gateway" "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GW" \
  --admin-listen off --broker "tcp://127.0.0.1:$FRONT" --threads 1 --max-connections $((CONNECTIONS * 2 + 1000)) \
  --max-connections-per-client 0 >"$OUT/gateway.log" 2>&1 & pids+=($!)

deadline=$((SECONDS + 30))
until curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$GW/rule-engine/health" 2>/dev/null; do
  ((SECONDS < deadline)) || { echo "heap_profile: the stack did not become ready" >&2; exit 1; }
  sleep 0.2
done

if $ALLOCATIONS; then
  wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" "http://127.0.0.1:$GW/rule-engine/health" \
    >"$OUT/wrk.log" 2>&1
else
  BENCH_METHOD=POST BENCH_LUA_DIR=bench/load BENCH_CONNECTIONS=$CONNECTIONS BENCH_THREADS=1 \
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" --timeout 11s -s bench/load/slow.lua \
    "http://127.0.0.1:$GW/rule-engine/session/add" >"$OUT/wrk.log" 2>&1
  grep -o 'window_rps=[0-9.]*' "$OUT/wrk.log" | sed "s/^/$CONNECTIONS connections, steady /"
fi

# heaptrack writes its file when the profiled process exits: stop them (SIGTERM, graceful).
cleanup
pids=()
if $ALLOCATIONS; then
  per_request() {  # per_request TRACE MARKER: allocations / calls of the once-per-request MARKER
    local total calls
    total=$( (heaptrack_print -f "$1" 2>/dev/null || true) |
               awk '/^calls to allocation functions:/ {print $5}')
    calls=$( (heaptrack_print -f "$1" -n 400 --print-peaks 0 --print-temporary 0 --print-leaks 0 \
                2>/dev/null || true) | grep -E '^[0-9]+ calls to allocation functions with' -A1 |
               grep -B1 -F "$2" | head -1 | awk '{print $1}')
    awk -v t="${total:-0}" -v n="${calls:-0}" 'BEGIN {
      if (n > 0) printf "%.1f allocations per request (%d allocations, %d requests)\n", t / n, t, n
      else print "no requests seen" }'
  }
  echo "gateway: $(per_request "$OUT/heaptrack.gateway.zst" 'courier::gateway::BrokerCall::BrokerCall(')"
  echo "worker:  $(per_request "$OUT/heaptrack.worker.zst" 'courier::workers::Worker::run_request(unsigned long')"
  exit 0
fi
for name in broker worker gateway; do
  file=$OUT/heaptrack.$name.zst
  [[ -f $file ]] || { echo "heap_profile: no profile for $name" >&2; continue; }
  echo "== $name: $( (heaptrack_print -f "$file" 2>/dev/null || true) | grep 'peak heap memory' || true)"
  (heaptrack_print -f "$file" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
      --print-leaks 0 --peak-limit 12 2>/dev/null || true) |
    grep -A1 'peak memory consumed over' | grep -v '^--' | paste - - |
    sed -e 's/  *in \/.*//' -e 's/(.*//' | cut -c1-150 || true
done
echo "profiles: $OUT/heaptrack.*.zst (heaptrack_gui or heaptrack_print -f FILE for more)"
