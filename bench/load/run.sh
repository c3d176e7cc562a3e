#!/usr/bin/env bash
# Load benchmark: the same upstream (courier-demo-upstream) reached directly, through NGINX as a
# reverse proxy and through Courier (broker + gateway + worker), with the same wrk parameters.
# Prints req/s, p50/p99/p99.9 and the ratios Courier/NGINX and Courier/direct per scenario:
#   1. GET, fast upstream, small JSON reply, 64 connections
#   2. slow upstream (1 s per reply), 5,000 connections: throughput against the bound
#      connections / latency, and Courier's resident memory per request in flight
#   3. POST with 1 KiB and 64 KiB JSON bodies (echoed back by the upstream), 64 connections
# Everything runs on 127.0.0.1 and is stopped on exit. See docs/performance.md.
#
# Usage: bench/load/run.sh [--quick] [--duration S] [--rounds N] [--scenarios 1,2,3]
#                          [--wait-idle S] [--keep-logs]
#   --quick        4 s per measurement (7 s for scenario 2) instead of 10 s
#   --duration S   seconds per measurement (scenario 2 uses at least 7)
#   --rounds N     repeat each scenario's direct/nginx/courier triple N times (default 1);
#                  the summary shows the median and every round
#   --scenarios L  comma-separated subset, e.g. 1,3
#   --wait-idle S  before each scenario wait up to S s for the 1-min load average to drop
#                  below the number of cores (default 0: measure at once; the load is printed)
# Environment (defaults in brackets):
#   COURIER_BUILD_DIR [build]  GATEWAY_THREADS [1]  WORKERS [1]  UPSTREAM_THREADS [1]
#   WRK_THREADS [1]  FAST_CONNECTIONS [64]  SLOW_CONNECTIONS [5000]  SLOW_LATENCY_MS [1000]
#   PORT_BASE [18400] (uses PORT_BASE+1..+5)  BENCH_OUT [run/bench-load]
#   TRANSPORT [tcp]: tcp (loopback ports) or ipc (Unix sockets in BENCH_OUT) between the
#   gateway, the broker and the worker
#   EMBEDDED_BROKER [false]: true runs the broker inside the gateway (gateway.embedded_broker:
#   no broker process, the gateway reaches it over inproc://, the worker its backend as usual)
#   HOP_STAMPS [true]: the gateway's gateway.hop_stamps; each Courier run prints the mean time
#   per hop from courier_gateway_hop_seconds (docs/protocol.md, "Stamps"), also in hops.txt,
#   with what one bare libzmq hop costs just before it (bench/zmq_hop_bench, when built)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

DURATION=10
SLOW_MIN_DURATION=7
ROUNDS=1
SCENARIOS=1,2,3
WAIT_IDLE=0
while (($#)); do
  case $1 in
    --quick) DURATION=4 ;;
    --duration) DURATION=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --wait-idle) WAIT_IDLE=$2; shift ;;
    --keep-logs) ;;  # logs are always kept in $BENCH_OUT
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SLOW_DURATION=$((DURATION > SLOW_MIN_DURATION ? DURATION : SLOW_MIN_DURATION))

BIN=${COURIER_BUILD_DIR:-build}
GATEWAY_THREADS=${GATEWAY_THREADS:-1}
WORKERS=${WORKERS:-1}
UPSTREAM_THREADS=${UPSTREAM_THREADS:-1}
WRK_THREADS=${WRK_THREADS:-1}
FAST_CONNECTIONS=${FAST_CONNECTIONS:-64}
SLOW_CONNECTIONS=${SLOW_CONNECTIONS:-5000}
SLOW_LATENCY_MS=${SLOW_LATENCY_MS:-1000}
PORT_BASE=${PORT_BASE:-18400}
UP_PORT=$((PORT_BASE + 1)) NGINX_PORT=$((PORT_BASE + 2)) GW_PORT=$((PORT_BASE + 3))
BR_FRONT=$((PORT_BASE + 4)) BR_BACK=$((PORT_BASE + 5)) ADMIN_PORT=$((PORT_BASE + 6))
OUT=${BENCH_OUT:-run/bench-load}
LUA_DIR=$ROOT/bench/load
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- prerequisites
BENCH_NAME=bench source bench/prerequisites.sh

binaries=("$BIN/gateway/courier-gateway" "$BIN/broker/courier-broker"
          "$BIN/workers/courier-worker" "$BIN/demo/courier-demo-upstream")
for b in "${binaries[@]}"; do
  if [[ ! -x $b ]]; then
    echo "bench: $b missing; building Courier (Release) in $BIN via scripts/setup.sh"
    extra=()
    [[ -f $BIN/CMakeCache.txt ]] || extra=(-DCOURIER_BUILD_TESTS=OFF -DCOURIER_BUILD_BENCH=OFF)
    COURIER_BUILD_DIR=$BIN COURIER_BUILD_TYPE=Release scripts/setup.sh "${extra[@]}"
    break
  fi
done
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BIN/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || echo "bench: WARNING: $BIN is a '${build_type:-unknown}' build, not Release" >&2

# Every process here holds up to 2 x SLOW_CONNECTIONS descriptors (NGINX: client + upstream side).
want_fds=$((2 * SLOW_CONNECTIONS + 2000))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < want_fds)); then
  echo "bench: WARNING: ulimit -n is $(ulimit -n), scenario 2 wants $want_fds (raise the hard limit)" >&2
fi

for port in $UP_PORT $NGINX_PORT $GW_PORT $BR_FRONT $BR_BACK $ADMIN_PORT; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    echo "bench: port $port is in use; set PORT_BASE to a free range" >&2
    exit 1
  fi
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs
rm -rf "$LOGS" "$OUT/nginx"
mkdir -p "$LOGS" "$OUT/nginx"
RESULTS=$OUT/results.tsv
case ${TRANSPORT:-tcp} in
  tcp) FRONT_EP=tcp://127.0.0.1:$BR_FRONT BACK_EP=tcp://127.0.0.1:$BR_BACK ;;
  ipc) FRONT_EP=ipc://$OUT/front.sock BACK_EP=ipc://$OUT/back.sock ;;
  *) echo "bench: TRANSPORT must be tcp or ipc, not '$TRANSPORT'" >&2; exit 2 ;;
esac
echo "bench: broker transport ${TRANSPORT:-tcp} ($FRONT_EP, $BACK_EP)"
echo -e "scenario\tcase\ttarget\tround\tload1\trps\tok_rps\tp50_us\tp99_us\tp999_us\tmax_us\tnon2xx\terrors\twindow_rps\trss_idle_kib\trss_load_kib\tinflight\tproxy_cpu_us_per_req\tupstream_cpu_us_per_req" >"$RESULTS"
THREADS_CPU=$OUT/thread_cpu.txt
: >"$THREADS_CPU"; : >"$OUT/rss.txt"; : >"$OUT/hops.txt"

# ---------------------------------------------------------------- processes
declare -A PROC   # name -> pid
ORDER=()
start() {  # start NAME CMD...: in the background, output to $LOGS/NAME.log
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PROC[$name]=$!
  ORDER+=("$name")
}
stop_all() {  # reverse start order: proxies before the upstream
  local i name pid
  for ((i=${#ORDER[@]}-1; i>=0; i--)); do
    name=${ORDER[i]}; pid=${PROC[$name]:-}
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "${ORDER[@]}"; do
    pid=${PROC[$name]:-}
    [[ -z $pid ]] && continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PROC=(); ORDER=()
}
# ---------------------------------------------------------------- CPU pinning (issue 16)
# For runs on a larger machine (docs/performance.md, "Scaling plan"): each kind of process on
# its own cores, with taskset (util-linux), e.g.
#   GATEWAY_CPUS=0-3 BROKER_CPUS=4 WORKER_CPUS=5-7 NGINX_CPUS=0-3 UPSTREAM_CPUS=8-9 WRK_CPUS=10-11
# together with GATEWAY_THREADS and WORKERS. A CPU list as taskset -c takes it; unset: not pinned
# (the default, as before). NGINX's master and worker, every Courier worker process and all
# threads of a process share their kind's list. Everything about pinning is in this block: it
# wraps start() and, when WRK_CPUS is set, puts a wrk that runs under taskset first in PATH.
pin_cpus_of() {  # pin_cpus_of NAME: the CPU list for the process start() names NAME
  case $1 in
    gateway) echo "${GATEWAY_CPUS:-}" ;;
    broker*) echo "${BROKER_CPUS:-}" ;;
    worker*) echo "${WORKER_CPUS:-}" ;;
    nginx) echo "${NGINX_CPUS:-}" ;;
    upstream*) echo "${UPSTREAM_CPUS:-}" ;;
  esac
}
pin_summary=""
for pin_kind in GATEWAY BROKER WORKER NGINX UPSTREAM WRK; do
  pin_var=${pin_kind}_CPUS
  [[ -n ${!pin_var:-} ]] || continue
  taskset -c "${!pin_var}" true 2>/dev/null ||
    { echo "bench: $pin_var=${!pin_var} is not a CPU list this machine has (nproc: $(nproc))" >&2; exit 2; }
  pin_summary+=" $pin_var=${!pin_var}"
done
if [[ -n $pin_summary ]]; then
  echo "bench: CPU pinning:$pin_summary"
  eval "start_unpinned() $(declare -f start | tail -n +2)"
  start() {  # taskset execs the command, so $! is still the process itself
    local name=$1 cpus; shift; cpus=$(pin_cpus_of "$name")
    if [[ -n $cpus ]]; then start_unpinned "$name" taskset -c "$cpus" "$@"; else start_unpinned "$name" "$@"; fi
  }
  if [[ -n ${WRK_CPUS:-} ]]; then
    mkdir -p "$OUT/pin-bin"
    printf '#!/bin/sh\nexec taskset -c %s %s "$@"\n' "$WRK_CPUS" "$(command -v wrk)" >"$OUT/pin-bin/wrk"
    chmod +x "$OUT/pin-bin/wrk"
    PATH=$OUT/pin-bin:$PATH
  fi
fi
# ---------------------------------------------------------------- end of CPU pinning

WRK_PID=""
on_exit() {
  trap - INT TERM EXIT
  [[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null || true
  stop_all
}
trap on_exit EXIT
trap 'exit 130' INT TERM

wait_until() {  # wait_until SECONDS CMD...: poll CMD every 0.1 s; fail when any process died
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    for name in "${ORDER[@]}"; do
      kill -0 "${PROC[$name]}" 2>/dev/null || { echo "bench: $name exited; see $LOGS/$name.log" >&2; exit 1; }
    done
    ((SECONDS < deadline)) || { echo "bench: timed out waiting for: $*" >&2; exit 1; }
    sleep 0.1
  done
}
http_ok() { curl -fsS -m 5 -o /dev/null "$1"; }
courier_ready() {
  curl -fsS -m 2 "http://127.0.0.1:$ADMIN_PORT/services" |
    jq -e --argjson n "$WORKERS" '.broker_connected and (.services["rule-engine"].workers >= $n)'
}

start_upstream() {  # start_upstream LATENCY_MS
  start upstream "$BIN/demo/courier-demo-upstream" --role rule-engine --listen "127.0.0.1:$UP_PORT" \
    --threads "$UPSTREAM_THREADS" --latency-ms "$1" --log-level warn
  wait_until 10 http_ok "http://127.0.0.1:$UP_PORT/health"
}
start_nginx() {
  local prefix=$OUT/nginx
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@UPSTREAM_PORT@|$UP_PORT|g" -e "s|@LISTEN_PORT@|$NGINX_PORT|g" \
      -e "s|@WORKER_CONNECTIONS@|$want_fds|g" -e "s|@NOFILE@|$((want_fds + 1000))|g" \
      -e "s|@UPSTREAM_KEEPALIVE@|$((SLOW_CONNECTIONS + 1000))|g" \
      "$LUA_DIR/nginx.conf" >"$prefix/nginx.conf"
  "$NGINX" -t -q -p "$prefix" -c "$prefix/nginx.conf" 2>"$LOGS/nginx-test.log" ||
    { cat "$LOGS/nginx-test.log" >&2; exit 1; }
  start nginx "$NGINX" -p "$prefix" -c "$prefix/nginx.conf"
  wait_until 10 http_ok "http://127.0.0.1:$NGINX_PORT/rule-engine/health"
}
start_courier() {  # start_courier CONNECTIONS
  local concurrency=$(( (2 * $1 + WORKERS - 1) / WORKERS ))
  ((concurrency < 256)) && concurrency=256
  # Same knobs for every scenario: access log off (warn level, like NGINX's access_log off), the
  # keep-alive pool as large as NGINX's, enough credit and queue that nothing is rejected.
  export RULE_ENGINE_URL=http://127.0.0.1:$UP_PORT AI_GM_URL=http://127.0.0.1:9
  export COURIER_LOG_LEVEL=warn COURIER_ACCESS_LOG=false COURIER_MAX_CONNECTIONS=$((SLOW_CONNECTIONS + 1000))
  export COURIER_MAX_QUEUE=$((2 * SLOW_CONNECTIONS)) COURIER_WORKER_CONCURRENCY=$concurrency
  export COURIER_HOP_STAMPS=${HOP_STAMPS:-true}
  local n broker_link=(--broker "$FRONT_EP")
  if [[ ${EMBEDDED_BROKER:-false} == true ]]; then
    export COURIER_BROKER_BACKEND=$BACK_EP COURIER_BROKER_ID=bench
    broker_link=(--embedded-broker true)
  else
    start broker "$BIN/broker/courier-broker" --frontend "$FRONT_EP" --backend "$BACK_EP" --id bench
  fi
  for ((n=1; n<=WORKERS; n++)); do
    start "worker-$n" "$BIN/workers/courier-worker" --service rule-engine \
      --broker "$BACK_EP" --id "bench-$n" --concurrency "$concurrency"
  done
  start gateway "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GW_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" "${broker_link[@]}" --threads "$GATEWAY_THREADS" \
    --max-connections $((2 * SLOW_CONNECTIONS + 1000)) --max-connections-per-client 0
  wait_until 15 courier_ready
  wait_until 10 http_ok "http://127.0.0.1:$GW_PORT/rule-engine/health"
}
declare -A RSS_AT_START RSS_EACH_AT_START
note_idle_rss() {  # note_idle_rss nginx|courier: after start-up and one request
  local label=$1 p pids; mapfile -t pids < <("${label}_pids")
  RSS_AT_START[$label]=$(rss_kib "${pids[@]}"); RSS_EACH_AT_START[$label]=""
  for p in "${pids[@]}"; do RSS_EACH_AT_START[$label]+=" $(tr -d '\0' </proc/"$p"/comm 2>/dev/null):$(rss_kib "$p")"; done
}
courier_pids() { local n; [[ -n ${PROC[broker]:-} ]] && echo "${PROC[broker]}"; echo "${PROC[gateway]}"; for ((n=1; n<=WORKERS; n++)); do echo "${PROC[worker-$n]}"; done; }
nginx_pids() { echo "${PROC[nginx]}"; pgrep -P "${PROC[nginx]}" || true; }

rss_kib() {  # rss_kib PID...: summed VmRSS
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
cpu_ticks() {  # cpu_ticks PID...: summed utime+stime (all threads)
  local total=0 pid v
  for pid in "$@"; do
    v=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
thread_ticks() {  # thread_ticks LABEL PID...: "label pid tid comm ticks" per thread
  local label=$1 pid t; shift
  for pid in "$@"; do
    for t in /proc/"$pid"/task/*; do
      printf '%s %s %s %s %s\n' "$label" "$pid" "${t##*/}" "$(tr -d '\0' <"/proc/$pid/comm")/$(tr ' ' _ <"$t/comm" 2>/dev/null)" \
        "$(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{print $12 + $13}')"
    done
  done
}
loadavg() { cut -d' ' -f1 /proc/loadavg; }
wait_for_idle() {
  ((WAIT_IDLE > 0)) || return 0
  local deadline=$((SECONDS + WAIT_IDLE)) cores; cores=$(nproc)
  while ((SECONDS < deadline)) && awk -v l="$(loadavg)" -v c="$cores" 'BEGIN {exit !(l >= c)}'; do
    echo "  (load $(loadavg) >= $cores cores; waiting up to $((deadline - SECONDS)) s)"; sleep 10
  done
}

# ---------------------------------------------------------------- one measurement
# measure SCENARIO CASE TARGET ROUND URL CONNECTIONS DURATION SCRIPT [ENV=VALUE...]
# What one bare libzmq hop between two idle processes costs right now (bench/zmq_hop_bench.cpp),
# to read each broker hop of the breakdown against: "mean M µs, p50 P µs" (empty when not built).
hop_floor() {
  [[ -x $BIN/bench/zmq_hop_bench ]] || return 0
  local args=(--round-trips 2000)
  [[ ${TRANSPORT:-tcp} == ipc ]] && args+=(--ipc "$OUT")
  "$BIN/bench/zmq_hop_bench" "${args[@]}" 2>/dev/null |
    sed -n 's/^RESULT hop_mean_us=\([^ ]*\) hop_p50_us=\([^ ]*\).*/mean \1 µs, p50 \2 µs/p' || true
}
# The gateway's per-hop histograms' _sum and _count lines (none with HOP_STAMPS=false).
hop_snapshot() {
  curl -fsS -m 2 "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^courier_gateway_hop_seconds_' || true
}
# hop_report BEFORE AFTER: over the requests between two snapshots, each hop in path order as
# "name mean/p50 (share)": its mean and its median (interpolated within the histogram's bucket,
# so as good as the buckets around it) in µs, and the mean's share of the round trip ("total").
hop_report() {
  awk -v before="$1" -v after="$2" '
    function load(text, into,   n, lines, i, name, hop, v, le) {
      n = split(text, lines, "\n")
      for (i = 1; i <= n; i++) {
        if (!match(lines[i], /hop="[a-z_]+"/)) continue
        hop = substr(lines[i], RSTART + 5, RLENGTH - 6)
        v = lines[i]; sub(/.* /, "", v)
        if (lines[i] ~ /^courier_gateway_hop_seconds_sum/) into[hop SUBSEP "sum"] += v
        else if (lines[i] ~ /^courier_gateway_hop_seconds_count/) into[hop SUBSEP "count"] += v
        else if (match(lines[i], /le="[^"]+"/)) {
          le = substr(lines[i], RSTART + 4, RLENGTH - 5)
          if (le != "+Inf") { into[hop SUBSEP "le" SUBSEP le] += v; les[le + 0] = le }
        }
      }
    }
    function median(h, c,   target, prev_le, prev_n, k, n, le) {
      target = c / 2; prev_le = 0; prev_n = 0
      for (k = 1; k <= nles; k++) {
        le = sorted[k]
        n = a[h SUBSEP "le" SUBSEP les[le]] - b[h SUBSEP "le" SUBSEP les[le]]
        if (n >= target) return (prev_le + (le - prev_le) * (target - prev_n) / (n > prev_n ? n - prev_n : 1)) * 1e6
        prev_le = le; prev_n = n
      }
      return -1
    }
    BEGIN {
      load(before, b); load(after, a)
      nles = 0; for (x in les) sorted[++nles] = x + 0
      for (p = 2; p <= nles; p++) for (q = p; q > 1 && sorted[q-1] > sorted[q]; q--) { t = sorted[q]; sorted[q] = sorted[q-1]; sorted[q-1] = t }
      split("gateway gateway_to_broker broker broker_to_worker worker_before_upstream upstream worker_after_upstream worker_to_broker broker_reply broker_to_gateway gateway_reply total", hops, " ")
      n = a["total" SUBSEP "count"] - b["total" SUBSEP "count"]
      if (n <= 0) { print "no stamped replies"; exit }
      total = (a["total" SUBSEP "sum"] - b["total" SUBSEP "sum"]) / n * 1e6
      line = sprintf("%d replies, mean/p50 µs:", n)
      for (i = 1; i <= 12; i++) {
        h = hops[i]; c = a[h SUBSEP "count"] - b[h SUBSEP "count"]
        if (c <= 0) { line = line sprintf(" %s -", h); continue }
        m = (a[h SUBSEP "sum"] - b[h SUBSEP "sum"]) / c * 1e6
        line = line sprintf(" %s %.0f/%.0f", h, m, median(h, c))
        if (h != "total" && total > 0) line = line sprintf(" (%.0f%%)", 100 * m / total)
      }
      print line
    }'
}

measure() {
  local scenario=$1 cname=$2 target=$3 round=$4 url=$5 conns=$6 dur=$7 script=$8; shift 8
  local load proxy_pids=() timeout=5 out=$LOGS/wrk-$scenario-$cname-$target-$round.txt
  case $target in
    nginx) mapfile -t proxy_pids < <(nginx_pids) ;;
    courier) mapfile -t proxy_pids < <(courier_pids) ;;
  esac
  [[ $scenario == 2 ]] && timeout=$((SLOW_LATENCY_MS / 1000 + 10))
  # "Idle" is the RSS recorded right after the proxy started (RSS_AT_START), not after an earlier
  # round: allocators keep memory once touched.
  local rss_idle=0 rss_each0=""
  case $target in
    nginx) rss_idle=${RSS_AT_START[nginx]:-0}; rss_each0=${RSS_EACH_AT_START[nginx]:-} ;;
    courier) rss_idle=${RSS_AT_START[courier]:-0}; rss_each0=${RSS_EACH_AT_START[courier]:-} ;;
  esac
  local cpu0=0 up0; ((${#proxy_pids[@]})) && cpu0=$(cpu_ticks "${proxy_pids[@]}")
  up0=$(cpu_ticks "${PROC[upstream]}")
  local threads0=""; [[ $target == courier ]] && threads0=$(thread_ticks x "${proxy_pids[@]}")
  load=$(loadavg)
  local hops0="" floor=""
  if [[ $target == courier ]]; then
    floor=$(hop_floor)
    hops0=$(hop_snapshot)
  fi

  env BENCH_LUA_DIR="$LUA_DIR" BENCH_CONNECTIONS="$conns" BENCH_THREADS="$WRK_THREADS" "$@" \
    wrk -t"$WRK_THREADS" -c"$conns" -d"${dur}s" --timeout "${timeout}s" -s "$LUA_DIR/$script" "$url" \
    >"$out" 2>&1 &
  WRK_PID=$!
  # Memory under load: the largest sum of VmRSS sampled inside the steady-state window.
  local rss_load=0 rss_each="" inflight="" t0=$SECONDS r
  if [[ $scenario == 2 ]] && ((${#proxy_pids[@]})); then
    sleep "${BENCH_WINDOW_FROM_S:-3}"
    while kill -0 "$WRK_PID" 2>/dev/null && ((SECONDS - t0 < dur - 1)); do
      r=$(rss_kib "${proxy_pids[@]}")
      if ((r > rss_load)); then
        rss_load=$r; rss_each=""
        for p in "${proxy_pids[@]}"; do rss_each+=" $(tr -d '\0' </proc/"$p"/comm 2>/dev/null):$(rss_kib "$p")"; done
      fi
      if [[ $target == courier && -z $inflight ]]; then
        inflight=$(curl -fsS -m 2 "http://127.0.0.1:$ADMIN_PORT/services" | jq -r '.gateway.in_flight' || true)
      fi
      sleep 0.5
    done
  fi
  wait "$WRK_PID" || true
  WRK_PID=""
  [[ $rss_load -gt 0 ]] &&
    echo "scenario $scenario $cname $target round $round: VmRSS KiB idle${rss_each0} | under load${rss_each}" >>"$OUT/rss.txt"
  local cpu1=0 up1; ((${#proxy_pids[@]})) && cpu1=$(cpu_ticks "${proxy_pids[@]}")
  up1=$(cpu_ticks "${PROC[upstream]}")
  if [[ $target == courier ]]; then
    {
      echo "# scenario $scenario $cname round $round: CPU ticks (1/$CLK_TCK s) per thread during the run"
      join -j1 <(echo "$threads0" | awk '{print $3, $4, $5}' | sort) \
               <(thread_ticks x "${proxy_pids[@]}" | awk '{print $3, $4, $5}' | sort) |
        awk '{printf "  tid %-8s %-24s %6d\n", $1, $2, $5 - $3}'
    } >>"$THREADS_CPU"
  fi

  local hops_line=""
  if [[ $target == courier ]]; then
    hops_line=$(hop_report "$hops0" "$(hop_snapshot)")
    [[ -n $floor ]] && hops_line+=" | libzmq floor per hop, just before: $floor"
    echo "scenario $scenario $cname round $round: $hops_line" >>"$OUT/hops.txt"
  fi

  local line; line=$(grep '^RESULT ' "$out" || true)
  if [[ -z $line ]]; then echo "bench: wrk failed, see $out" >&2; cat "$out" >&2; exit 1; fi
  kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line "; }
  local requests errors; requests=$(kv requests)
  errors=$(( $(kv connect_err) + $(kv read_err) + $(kv write_err) + $(kv timeouts) ))
  awk -v OFS='\t' -v s="$scenario" -v c="$cname" -v t="$target" -v r="$round" -v l="$load" \
      -v rps="$(kv rps)" -v ok="$(kv ok_rps)" -v p50="$(kv p50_us)" -v p99="$(kv p99_us)" \
      -v p999="$(kv p999_us)" -v mx="$(kv max_us)" -v n2="$(kv non2xx)" -v e="$errors" \
      -v w="$(kv window_rps)" -v ri="$rss_idle" -v rl="$rss_load" -v inf="${inflight:-}" \
      -v pc="$(( (cpu1 - cpu0) ))" -v uc="$(( (up1 - up0) ))" -v req="$requests" -v tck="$CLK_TCK" \
      'BEGIN {
         pcu = req > 0 ? (pc * 1e6 / tck) / req : 0; ucu = req > 0 ? (uc * 1e6 / tck) / req : 0
         print s, c, t, r, l, rps, ok, p50, p99, p999, mx, n2, e, (w == "" ? "-" : w),
               ri, rl, (inf == "" ? "-" : inf), sprintf("%.1f", pcu), sprintf("%.1f", ucu)
       }' >>"$RESULTS"
  local shown; shown=$(kv ok_rps); [[ $scenario == 2 ]] && shown="$(kv window_rps) (steady)"
  printf '    %-8s %10s req/s  p50 %7.2f ms  p99 %7.2f ms  p99.9 %7.2f ms  non-2xx %s  errors %s  (load %s)\n' \
    "$target" "$shown" "$(awk -v x="$(kv p50_us)" 'BEGIN{print x/1000}')" \
    "$(awk -v x="$(kv p99_us)" 'BEGIN{print x/1000}')" "$(awk -v x="$(kv p999_us)" 'BEGIN{print x/1000}')" \
    "$(kv non2xx)" "$errors" "$load"
  [[ -n $hops_line ]] && echo "             hops: $hops_line"
  return 0
}

run_triple() {  # run_triple SCENARIO CASE PATH CONNECTIONS DURATION SCRIPT [ENV...]
  local scenario=$1 cname=$2 path=$3 conns=$4 dur=$5 script=$6; shift 6
  local round
  for ((round=1; round<=ROUNDS; round++)); do
    echo "  [$cname] round $round/$ROUNDS"
    measure "$scenario" "$cname" direct "$round" "http://127.0.0.1:$UP_PORT$path" "$conns" "$dur" "$script" "$@"
    measure "$scenario" "$cname" nginx "$round" "http://127.0.0.1:$NGINX_PORT/rule-engine$path" "$conns" "$dur" "$script" "$@"
    measure "$scenario" "$cname" courier "$round" "http://127.0.0.1:$GW_PORT/rule-engine$path" "$conns" "$dur" "$script" "$@"
  done
}

# ---------------------------------------------------------------- scenarios
echo "Courier load benchmark: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | sed 's/.*: //')"
echo "Courier: $BIN ($build_type), $([[ ${EMBEDDED_BROKER:-false} == true ]] && echo "the broker in the gateway" || echo "1 broker"), $WORKERS worker(s), gateway --threads $GATEWAY_THREADS; NGINX: 1 worker process; upstream: --threads $UPSTREAM_THREADS; wrk -t$WRK_THREADS"
echo "logs and raw results: $OUT"

scenario_on() { [[ ,$SCENARIOS, == *,$1,* ]]; }

if scenario_on 1; then
  wait_for_idle
  echo "Scenario 1: GET /health (small JSON), $FAST_CONNECTIONS connections, ${DURATION} s"
  start_upstream 0; start_nginx; start_courier "$FAST_CONNECTIONS"
  run_triple 1 get-small /health "$FAST_CONNECTIONS" "$DURATION" fast.lua BENCH_METHOD=GET
  stop_all
fi
if scenario_on 2; then
  wait_for_idle
  echo "Scenario 2: POST /session/add, upstream latency ${SLOW_LATENCY_MS} ms, $SLOW_CONNECTIONS connections, ${SLOW_DURATION} s"
  start_upstream "$SLOW_LATENCY_MS"; start_nginx; start_courier "$SLOW_CONNECTIONS"
  note_idle_rss nginx; note_idle_rss courier
  export BENCH_WINDOW_FROM_S=3
  BENCH_WINDOW_TO_S=$(awk -v d="$SLOW_DURATION" 'BEGIN {print d - 0.5}')
  run_triple 2 slow /session/add "$SLOW_CONNECTIONS" "$SLOW_DURATION" slow.lua BENCH_METHOD=POST \
    BENCH_SPREAD_MS="$SLOW_LATENCY_MS" BENCH_WINDOW_FROM_S=3 BENCH_WINDOW_TO_S="$BENCH_WINDOW_TO_S"
  stop_all
fi
if scenario_on 3; then
  wait_for_idle
  echo "Scenario 3: POST /session/add with 1 KiB and 64 KiB JSON bodies (echoed), $FAST_CONNECTIONS connections, ${DURATION} s"
  start_upstream 0; start_nginx; start_courier "$FAST_CONNECTIONS"
  run_triple 3 post-1k /session/add "$FAST_CONNECTIONS" "$DURATION" fast.lua BENCH_METHOD=POST BENCH_BODY_BYTES=1024
  run_triple 3 post-64k /session/add "$FAST_CONNECTIONS" "$DURATION" fast.lua BENCH_METHOD=POST BENCH_BODY_BYTES=65536
  stop_all
fi

# ---------------------------------------------------------------- summary
echo
echo "================ summary (median over $ROUNDS round(s); per-round values in $RESULTS)"
awk -F'\t' -v bound=$((SLOW_CONNECTIONS * 1000 / SLOW_LATENCY_MS)) -v conns="$SLOW_CONNECTIONS" '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function add(k, v) { vals[k] = (k in vals) ? vals[k] " " v : v }
  NR == 1 { next }
  {
    key = $1 SUBSEP $2 SUBSEP $3
    if (!(($1 SUBSEP $2) in seen)) { seen[$1 SUBSEP $2] = 1; cases[++ncases] = $1 SUBSEP $2 }
    tput = ($1 == 2) ? $14 : $7
    add(key SUBSEP "tput", tput); add(key SUBSEP "p50", $8 / 1000); add(key SUBSEP "p99", $9 / 1000)
    add(key SUBSEP "p999", $10 / 1000); add(key SUBSEP "load", $5)
    add(key SUBSEP "bad", $12 + $13); add(key SUBSEP "cpu", $18)
    if ($15 > 0) add(key SUBSEP "rssi", $15)
    if ($16 > 0) { add(key SUBSEP "rssl", $16); add(key SUBSEP "perreq", ($16 - $15) / conns) }
    if ($3 != "direct") { r[$1 SUBSEP $2 SUBSEP $4 SUBSEP $3] = tput }
    if (!($4 in rounds)) { rounds[$4] = 1; nrounds++ }
  }
  END {
    split("direct nginx courier", targets, " ")
    for (c = 1; c <= ncases; c++) {
      split(cases[c], sc, SUBSEP); s = sc[1]; cs = sc[2]
      printf "\nScenario %s (%s)\n", s, cs
      printf "  %-8s %12s %9s %9s %9s %8s %10s %6s\n", "target", (s == 2 ? "req/s(steady)" : "req/s"), "p50 ms", "p99 ms", "p99.9 ms", "bad", "proxy µs/r", "load"
      for (t = 1; t <= 3; t++) {
        k = cases[c] SUBSEP targets[t]
        if (!((k SUBSEP "tput") in vals)) continue
        m[targets[t]] = median(vals[k SUBSEP "tput"])
        printf "  %-8s %12.0f %9.2f %9.2f %9.2f %8d %10.1f %6.2f\n", targets[t], m[targets[t]],
          median(vals[k SUBSEP "p50"]), median(vals[k SUBSEP "p99"]), median(vals[k SUBSEP "p999"]),
          median(vals[k SUBSEP "bad"]), median(vals[k SUBSEP "cpu"]), median(vals[k SUBSEP "load"])
      }
      if (m["nginx"] > 0 && m["direct"] > 0)
        printf "  ratios: courier/nginx %.2f   courier/direct %.2f   nginx/direct %.2f\n",
          m["courier"] / m["nginx"], m["courier"] / m["direct"], m["nginx"] / m["direct"]
      if (s == 2) {
        for (t = 1; t <= 3; t++)
          printf "  %-8s %.1f %% of the bound (%d req/s)\n", targets[t], 100 * m[targets[t]] / bound, bound
        for (t = 2; t <= 3; t++) {
          k = cases[c] SUBSEP targets[t]
          if ((k SUBSEP "perreq") in vals)
            printf "  %-8s RSS idle %.1f MiB, under load %.1f MiB: %.2f KiB per request in flight (%d in flight)\n",
              targets[t], median(vals[k SUBSEP "rssi"]) / 1024, median(vals[k SUBSEP "rssl"]) / 1024,
              median(vals[k SUBSEP "perreq"]), conns
        }
        pct = 100 * m["courier"] / bound; kib = median(vals[cases[c] SUBSEP "courier" SUBSEP "perreq"])
        printf "  target (2): >= 95 %% of the bound: %s (%.1f %%); <= 10 KiB per request in flight: %s (%.2f KiB)\n",
          (pct >= 95 ? "MET" : "MISSED"), pct, (kib <= 10 ? "MET" : "MISSED"), kib
      } else if (s == 1 && m["nginx"] > 0) {
        printf "  target (1): courier >= 0.6 x nginx: %s (%.2f)\n", (m["courier"] / m["nginx"] >= 0.6 ? "MET" : "MISSED"), m["courier"] / m["nginx"]
      }
      if (nrounds > 1 && m["nginx"] > 0) {
        printf "  courier/nginx per round:"
        for (rr = 1; (s SUBSEP cs SUBSEP rr SUBSEP "nginx") in r; rr++)
          printf " %.2f", r[s SUBSEP cs SUBSEP rr SUBSEP "courier"] / r[s SUBSEP cs SUBSEP rr SUBSEP "nginx"]
        printf "\n"
      }
      delete m
    }
  }' "$RESULTS"
echo
if [[ -s $OUT/hops.txt ]]; then
  echo "per-hop breakdown of Courier's runs (gateway /metrics, courier_gateway_hop_seconds):"
  sed 's/^/  /' "$OUT/hops.txt"
fi
echo "per-thread CPU of the Courier processes: $THREADS_CPU; VmRSS per process (scenario 2): $OUT/rss.txt"
