#!/usr/bin/env bash
# Heap allocations per proxied request in the gateway and the worker, under closed-loop load:
# upstream, broker, worker and gateway on 127.0.0.1 (the worker and the gateway under heaptrack),
# wrk for a few seconds, SIGTERM, then each process's allocation count divided by the calls of a
# function that allocates exactly once per request (the gateway's BrokerCall state, the worker's
# run_request frame): heaptrack may drop the last moments of a trace, so wrk's own count would
# overstate the requests it saw. Deterministic enough to compare builds. See docs/performance.md.
#
# Usage: bench/alloc_count.sh [--connections N] [--seconds S]
#   COURIER_BUILD_DIR [build]  PORT_BASE [18600] (uses PORT_BASE+1..+4)  ALLOC_OUT [run/alloc]
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=64
SECONDS_LOAD=3
while (($#)); do
  case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --seconds) SECONDS_LOAD=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "alloc_count: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in heaptrack heaptrack_print wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "alloc_count: $tool is missing; install it with: apt-get install heaptrack wrk curl" >&2
    exit 1
  }
done
BIN=${COURIER_BUILD_DIR:-build}
for b in broker/courier-broker workers/courier-worker gateway/courier-gateway \
         demo/courier-demo-upstream; do
  [[ -x $BIN/$b ]] || { echo "alloc_count: $BIN/$b missing; build first (scripts/setup.sh)" >&2; exit 1; }
done
BASE=${PORT_BASE:-18600}
UP=$((BASE + 1)) FRONT=$((BASE + 2)) BACK=$((BASE + 3)) GW=$((BASE + 4))
OUT=${ALLOC_OUT:-run/alloc}
mkdir -p "$OUT"
rm -f "$OUT"/heaptrack.*.zst

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

export RULE_ENGINE_URL=http://127.0.0.1:$UP AI_GM_URL=http://127.0.0.1:9
export COURIER_LOG_LEVEL=warn COURIER_ACCESS_LOG=false COURIER_WORKER_CONCURRENCY=256
"$BIN/demo/courier-demo-upstream" --role rule-engine --listen "127.0.0.1:$UP" --threads 1 \
  --latency-ms 0 --log-level warn >"$OUT/upstream.log" 2>&1 & pids+=($!)
"$BIN/broker/courier-broker" --frontend "tcp://127.0.0.1:$FRONT" --backend "tcp://127.0.0.1:$BACK" \
  --id alloc >"$OUT/broker.log" 2>&1 & pids+=($!)
heaptrack -o "$OUT/heaptrack.worker" "$BIN/workers/courier-worker" --service rule-engine \
  --broker "tcp://127.0.0.1:$BACK" --id alloc-1 --concurrency 256 >"$OUT/worker.log" 2>&1 &
worker=$!; pids+=($worker)
heaptrack -o "$OUT/heaptrack.gateway" "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GW" \
  --admin-listen off --broker "tcp://127.0.0.1:$FRONT" --threads 1 >"$OUT/gateway.log" 2>&1 &
gateway=$!; pids+=($gateway)

deadline=$((SECONDS + 30))
until curl -fsS -m 1 "http://127.0.0.1:$GW/rule-engine/health" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || { echo "alloc_count: Courier not ready in 30 s (logs in $OUT)" >&2; exit 1; }
  sleep 0.2
done
wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" "http://127.0.0.1:$GW/rule-engine/health" >"$OUT/wrk.log" 2>&1
# heaptrack runs the program as its child: SIGTERM it there, so that it exits (and heaptrack
# writes its trace) as on any shutdown.
for p in $gateway $worker; do pkill -TERM -P "$p" 2>/dev/null || true; done
wait "$gateway" "$worker" 2>/dev/null || true

per_request() {  # per_request TRACE MARKER
  local total calls
  total=$(heaptrack_print -f "$1" 2>/dev/null | awk '/^calls to allocation functions:/ {print $5}')
  calls=$(heaptrack_print -f "$1" -n 400 --print-peaks 0 --print-temporary 0 --print-leaks 0 2>/dev/null |
            grep -E '^[0-9]+ calls to allocation functions with' -A1 | grep -B1 -F "$2" |
            head -1 | awk '{print $1}')
  awk -v t="${total:-0}" -v n="${calls:-0}" \
    'BEGIN { if (n > 0) printf "%.1f allocations per request (%d allocations, %d requests)", t / n, t, n; else printf "no requests seen" }'
}
echo "gateway: $(per_request "$OUT/heaptrack.gateway.zst" 'courier::gateway::BrokerCall::BrokerCall(')"
echo "worker:  $(per_request "$OUT/heaptrack.worker.zst" 'courier::workers::Worker::run_request(unsigned long')"
