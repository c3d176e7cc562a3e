#!/usr/bin/env bash
# Realistic mix benchmark: the real callers' request shapes at a FIXED ARRIVAL RATE (open loop),
# sent to the demo upstreams directly, through NGINX and through Courier (broker + gateway + one
# worker per service), one after the other with the same request sequence. Per class (fast Rule
# Engine calls, /play/scenario with 1-2 KB of Korean JSON, 6-8 s GM turns, streamed riddles) it
# reports p50/p99 latency from the scheduled send, the latency ADDED over direct (time to first
# byte for the stream), errors and the achieved rate. With --find-max it steps the rate up until
# the fast class's p99 added latency exceeds --bound-ms or errors appear: the highest rate that
# held is what this box sustains. Everything runs on 127.0.0.1 and is stopped on exit.
# See docs/performance.md ("Realistic mix", "Scaling plan").
#
# Usage: bench/mix/run.sh [--quick] [--rate R] [--duration S] [--mix SPEC] [--targets LIST]
#                         [--find-max] [--max-rate R] [--step F] [--refine N] [--bound-ms MS]
#   --rate R       requests per second, all classes together (default 50; --find-max: the first)
#   --duration S   seconds of arrivals per measurement (default 20; --quick 10); the run then
#                  waits for the last replies (a GM turn takes 6-8 s)
#   --mix SPEC     class weights (default add=30,list=40,scenario=15,turn=10,riddle=5)
#   --targets L    subset of direct,nginx,courier (direct is needed for "added")
#   --find-max     measure at R, R*F, R*F^2, ... until Courier does not hold (or --max-rate),
#                  then --refine N bisection steps between the last rate held and the first not
#   --bound-ms MS  "held": the fast class's (add + list) p99 added over direct <= MS (default 50),
#                  and no errors in any class
# Environment (defaults in brackets):
#   COURIER_BUILD_DIR [build]  GATEWAY_THREADS [1]  WORKERS [1] (per service)  BROKERS [1]
#   UPSTREAM_THREADS [1]  THINK ["" : extra client --think CLASS=MIN:MAX, space-separated]
#   RIDDLE_INTERVAL_MS [50]  RIDDLE_CHARS [40]  SEED [1]  ARRIVALS [uniform|poisson]
#   CPU pinning with taskset (util-linux), each a CPU list such as 0-3 or 4,6; unset: no pinning:
#   GATEWAY_CPUS  BROKER_CPUS  WORKER_CPUS  NGINX_CPUS  UPSTREAM_CPUS  CLIENT_CPUS
#   PORT_BASE [18600] (uses PORT_BASE+1..+5 and +10.. for brokers)  BENCH_OUT [run/bench-mix]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

RATE=50
DURATION=20
MIX=add=30,list=40,scenario=15,turn=10,riddle=5
TARGETS=direct,nginx,courier
FIND_MAX=0
MAX_RATE=3200
STEP=2
REFINE=1
BOUND_MS=50
while (($#)); do
  case $1 in
    --quick) DURATION=10 ;;
    --rate) RATE=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --mix) MIX=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --find-max) FIND_MAX=1 ;;
    --max-rate) MAX_RATE=$2; shift ;;
    --step) STEP=$2; shift ;;
    --refine) REFINE=$2; shift ;;
    --bound-ms) BOUND_MS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ((FIND_MAX)) && ! [[ $RATE =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: --find-max steps whole rates; --rate must be a positive integer" >&2; exit 2
fi

BIN=${COURIER_BUILD_DIR:-build}
GATEWAY_THREADS=${GATEWAY_THREADS:-1}
WORKERS=${WORKERS:-1}
BROKERS=${BROKERS:-1}
UPSTREAM_THREADS=${UPSTREAM_THREADS:-1}
RIDDLE_INTERVAL_MS=${RIDDLE_INTERVAL_MS:-50}
RIDDLE_CHARS=${RIDDLE_CHARS:-40}
SEED=${SEED:-1}
ARRIVALS=${ARRIVALS:-uniform}
PORT_BASE=${PORT_BASE:-18600}
RE_PORT=$((PORT_BASE + 1)) GM_PORT=$((PORT_BASE + 2)) NGINX_PORT=$((PORT_BASE + 3))
GW_PORT=$((PORT_BASE + 4)) ADMIN_PORT=$((PORT_BASE + 5))
OUT=${BENCH_OUT:-run/bench-mix}
HERE=$ROOT/bench/mix
# Debian's interpreter: the client needs nothing but the standard library.
PYTHON=/usr/bin/python3
CLIENT=("$PYTHON" "$HERE/mix_client.py")

on() { [[ ,$1, == *,$2,* ]]; }  # on LIST ITEM

# ---------------------------------------------------------------- prerequisites
BENCH_NAME=bench-mix source bench/prerequisites.sh
[[ -x $PYTHON ]] || { echo "bench-mix: $PYTHON is needed for the client (apt-get install python3)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "bench-mix: taskset (util-linux) is missing" >&2; exit 1; }
for b in "$BIN/gateway/courier-gateway" "$BIN/broker/courier-broker" "$BIN/workers/courier-worker" \
         "$BIN/demo/courier-demo-upstream"; do
  if [[ ! -x $b ]]; then
    echo "bench-mix: $b missing; building Courier (Release) in $BIN via scripts/setup.sh"
    extra=()
    [[ -f $BIN/CMakeCache.txt ]] || extra=(-DCOURIER_BUILD_TESTS=OFF -DCOURIER_BUILD_BENCH=OFF)
    COURIER_BUILD_DIR=$BIN COURIER_BUILD_TYPE=Release scripts/setup.sh "${extra[@]}"
    break
  fi
done
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BIN/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || echo "bench-mix: WARNING: $BIN is a '${build_type:-unknown}' build, not Release" >&2
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ports=($RE_PORT $GM_PORT $NGINX_PORT $GW_PORT $ADMIN_PORT)
for ((k=0; k<BROKERS; k++)); do ports+=($((PORT_BASE + 10 + 2 * k)) $((PORT_BASE + 11 + 2 * k))); done
for port in "${ports[@]}"; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    echo "bench-mix: port $port is in use; set PORT_BASE to a free range" >&2
    exit 1
  fi
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs
rm -rf "$LOGS" "$OUT/nginx" "$OUT/records"
mkdir -p "$LOGS" "$OUT/nginx" "$OUT/records"
RESULTS=$OUT/results.tsv
rm -f "$RESULTS"
CPU_TSV=$OUT/cpu.tsv
echo -e "rate\ttarget\trequests\tproxy_cpu_s\tproxy_cpu_us_per_req\tload1" >"$CPU_TSV"

# ---------------------------------------------------------------- processes
declare -A PROC   # name -> pid
ORDER=()
cpus_of() {  # cpus_of NAME: the CPU list its kind is pinned to, or nothing
  case $1 in
    gateway) echo "${GATEWAY_CPUS:-}" ;;
    broker-*) echo "${BROKER_CPUS:-}" ;;
    worker-*) echo "${WORKER_CPUS:-}" ;;
    nginx) echo "${NGINX_CPUS:-}" ;;
    upstream-*) echo "${UPSTREAM_CPUS:-}" ;;
    client) echo "${CLIENT_CPUS:-}" ;;
  esac
}
# pinned NAME CMD...: becomes CMD (exec), under taskset when NAME's kind has CPUs; only ever run
# in a background subshell (`pinned ... &`), so that $! is the process itself (taskset execs too).
pinned() {
  local cpus; cpus=$(cpus_of "$1"); shift
  if [[ -n $cpus ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}
start() {  # start NAME CMD...: in the background, output to $LOGS/NAME.log
  local name=$1; shift
  pinned "$name" "$@" >"$LOGS/$name.log" 2>&1 &
  PROC[$name]=$!
  ORDER+=("$name")
}
CLIENT_PID=""
stop_all() {  # reverse start order: proxies before the upstreams
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
on_exit() {
  trap - INT TERM EXIT
  [[ -n $CLIENT_PID ]] && kill -TERM "$CLIENT_PID" 2>/dev/null || true
  stop_all
}
trap on_exit EXIT
trap 'exit 130' INT TERM

wait_until() {  # wait_until SECONDS CMD...: poll CMD every 0.1 s; fail when any process died
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    for name in "${ORDER[@]}"; do
      kill -0 "${PROC[$name]}" 2>/dev/null || { echo "bench-mix: $name exited; see $LOGS/$name.log" >&2; exit 1; }
    done
    ((SECONDS < deadline)) || { echo "bench-mix: timed out waiting for: $*" >&2; exit 1; }
    sleep 0.1
  done
}
http_ok() { curl -fsS -m 5 -o /dev/null "$1"; }
courier_ready() {
  curl -fsS -m 2 "http://127.0.0.1:$ADMIN_PORT/services" |
    jq -e --argjson n "$WORKERS" '.broker_connected and (.services["rule-engine"].workers >= $n)
                                  and (.services["ai-gm"].workers >= $n)'
}
cpu_ticks() {  # cpu_ticks PID...: summed utime+stime (all threads)
  local total=0 pid v
  for pid in "$@"; do
    v=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
courier_pids() {
  local name
  for name in "${ORDER[@]}"; do
    case $name in gateway|broker-*|worker-*) echo "${PROC[$name]}" ;; esac
  done
}
nginx_pids() { echo "${PROC[nginx]}"; pgrep -P "${PROC[nginx]}" || true; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }

start upstream-rule-engine "$BIN/demo/courier-demo-upstream" --role rule-engine \
  --listen "127.0.0.1:$RE_PORT" --threads "$UPSTREAM_THREADS" --log-level warn
start upstream-ai-gm "$BIN/demo/courier-demo-upstream" --role ai-gm \
  --listen "127.0.0.1:$GM_PORT" --threads "$UPSTREAM_THREADS" --log-level warn
wait_until 10 http_ok "http://127.0.0.1:$RE_PORT/health"
wait_until 10 http_ok "http://127.0.0.1:$GM_PORT/health"
if on "$TARGETS" nginx; then
  prefix=$OUT/nginx
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@RULE_ENGINE_PORT@|$RE_PORT|g" -e "s|@AI_GM_PORT@|$GM_PORT|g" \
      -e "s|@LISTEN_PORT@|$NGINX_PORT|g" "$HERE/nginx.conf" >"$prefix/nginx.conf"
  "$NGINX" -t -q -p "$prefix" -c "$prefix/nginx.conf" 2>"$LOGS/nginx-test.log" ||
    { cat "$LOGS/nginx-test.log" >&2; exit 1; }
  start nginx "$NGINX" -p "$prefix" -c "$prefix/nginx.conf"
  wait_until 10 http_ok "http://127.0.0.1:$NGINX_PORT/ai-gm/health"
fi
if on "$TARGETS" courier; then
  # Access log off (warn level, like NGINX's access_log off); deadlines above the GM's slowest
  # turns; credit and queues large enough that nothing is refused for want of a slot.
  export RULE_ENGINE_URL=http://127.0.0.1:$RE_PORT AI_GM_URL=http://127.0.0.1:$GM_PORT
  export RULE_ENGINE_TIMEOUT=30 AI_GM_TIMEOUT=30
  export COURIER_LOG_LEVEL=warn COURIER_ACCESS_LOG=false COURIER_MAX_CONNECTIONS=16000
  export COURIER_MAX_QUEUE=16000 COURIER_WORKER_CONCURRENCY=4096
  frontends="" backends=""
  for ((k=0; k<BROKERS; k++)); do
    front="tcp://127.0.0.1:$((PORT_BASE + 10 + 2 * k))" back="tcp://127.0.0.1:$((PORT_BASE + 11 + 2 * k))"
    start "broker-$((k + 1))" "$BIN/broker/courier-broker" --frontend "$front" --backend "$back" \
      --id "mix-$((k + 1))"
    frontends+="${frontends:+,}$front"; backends+="${backends:+,}$back"
  done
  for service in rule-engine ai-gm; do
    for ((n=1; n<=WORKERS; n++)); do
      start "worker-$service-$n" "$BIN/workers/courier-worker" --service "$service" \
        --broker "$backends" --id "mix-$service-$n" --concurrency "$COURIER_WORKER_CONCURRENCY"
    done
  done
  start gateway "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GW_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --broker "$frontends" --threads "$GATEWAY_THREADS" \
    --max-connections 16000 --max-connections-per-client 0
  wait_until 15 courier_ready
  wait_until 10 http_ok "http://127.0.0.1:$GW_PORT/ai-gm/health"
fi

base_of() {  # base_of TARGET SERVICE
  case $1 in
    direct) [[ $2 == rule-engine ]] && echo "http://127.0.0.1:$RE_PORT" || echo "http://127.0.0.1:$GM_PORT" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT/$2" ;;
    courier) echo "http://127.0.0.1:$GW_PORT/$2" ;;
  esac
}
think_args=()
for t in ${THINK:-}; do think_args+=(--think "$t"); done

IFS=, read -r -a targets <<<"$TARGETS"
echo "Courier mix benchmark: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $("$PYTHON" -V)"
echo "Courier: $BIN (${build_type:-?}), $BROKERS broker(s), $WORKERS worker(s) per service, gateway --threads $GATEWAY_THREADS; NGINX: 1 worker; upstreams: --threads $UPSTREAM_THREADS"
pins=""
for kind in GATEWAY BROKER WORKER NGINX UPSTREAM CLIENT; do
  v=${kind}_CPUS; [[ -n ${!v:-} ]] && pins+=" $v=${!v}"
done
echo "mix $MIX, ${DURATION} s of arrivals per measurement ($ARRIVALS), held: fast p99 added <= $BOUND_MS ms and no errors; CPU pinning:${pins:- none}"
echo "logs and raw results: $OUT"

# One short request of every class through each path first, so no first-use cost is measured.
for t in "${targets[@]}"; do
  "${CLIENT[@]}" run --target "$t" --rule-engine "$(base_of "$t" rule-engine)" --ai-gm "$(base_of "$t" ai-gm)" \
    --rate 20 --duration 0.5 --mix add=1,list=1,scenario=1,turn=1,riddle=1 --think turn=0:0 \
    --think scenario=0:0 --think riddle=0:0 --riddle-chars 2 --riddle-interval-ms 1 --warmup 0 \
    --timeout 10 --records "$OUT/records/warmup-$t.tsv" >"$LOGS/client-warmup-$t.log" 2>&1 ||
    { echo "bench-mix: warm-up through $t failed, see $LOGS/client-warmup-$t.log" >&2; exit 1; }
done

# ---------------------------------------------------------------- one rate
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2 "; }
# measure_rate RATE: every target at RATE; prints the table; sets HELD[target]=yes|no
declare -A HELD
measure_rate() {
  local rate=$1 t pids line c0 c1 load
  load=$(loadavg)
  echo
  echo "rate $rate req/s (load $load)"
  for t in "${targets[@]}"; do
    pids=()
    case $t in
      nginx) mapfile -t pids < <(nginx_pids) ;;
      courier) mapfile -t pids < <(courier_pids) ;;
    esac
    c0=0; ((${#pids[@]})) && c0=$(cpu_ticks "${pids[@]}")
    pinned client "${CLIENT[@]}" run --target "$t" --rule-engine "$(base_of "$t" rule-engine)" \
      --ai-gm "$(base_of "$t" ai-gm)" --rate "$rate" --duration "$DURATION" --mix "$MIX" \
      "${think_args[@]}" --riddle-interval-ms "$RIDDLE_INTERVAL_MS" --riddle-chars "$RIDDLE_CHARS" \
      --seed "$SEED" --arrivals "$ARRIVALS" --records "$OUT/records/$rate-$t.tsv" \
      >"$LOGS/client-$rate-$t.log" 2>&1 &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || true
    CLIENT_PID=""
    line=$(grep '^SUMMARY' "$LOGS/client-$rate-$t.log" || true)
    [[ -n $line ]] || { echo "bench-mix: client failed, see $LOGS/client-$rate-$t.log" >&2; cat "$LOGS/client-$rate-$t.log" >&2; exit 1; }
    c1=0; ((${#pids[@]})) && c1=$(cpu_ticks "${pids[@]}")
    awk -v OFS='\t' -v r="$rate" -v t="$t" -v n="$(kv requests "$line")" -v d=$((c1 - c0)) \
        -v tck="$(getconf CLK_TCK)" -v l="$load" \
        'BEGIN {s = d / tck; print r, t, n, sprintf("%.2f", s), (t == "direct" ? "-" : sprintf("%.1f", s * 1e6 / n)), l}' >>"$CPU_TSV"
    printf '  %-8s sent %s req/s (send lag p99 %s ms), %s connections, %s errors, %s s; proxy CPU %s\n' "$t" \
      "$(kv sent_rps "$line")" "$(kv lag_p99_ms "$line")" "$(kv connections "$line")" "$(kv errors "$line")" \
      "$(kv wall_s "$line")" "$(tail -1 "$CPU_TSV" | awk -F'\t' '{print ($2 == "direct") ? "-" : $5 " µs/req"}')"
  done
  "$PYTHON" "$HERE/mix_client.py" report --records "$OUT/records/$rate" --rate "$rate" \
    --bound-ms "$BOUND_MS" --results "$RESULTS" --load "$load" | tee "$LOGS/report-$rate.txt" | grep -v '^HELD'
  for t in "${targets[@]}"; do
    HELD[$t]=$(sed -n "s/^HELD target=$t .* held=\([a-z]*\).*/\1/p" "$LOGS/report-$rate.txt")
  done
  grep '^HELD' "$LOGS/report-$rate.txt" | sed 's/^HELD /  held: /'
}

if ((FIND_MAX)); then
  declare -A BEST FIRST_FAIL
  rate=$RATE
  while :; do
    measure_rate "$rate"
    for t in "${targets[@]}"; do
      if [[ ${HELD[$t]} == yes ]]; then
        [[ -z ${FIRST_FAIL[$t]:-} ]] && BEST[$t]=$rate
      else
        : "${FIRST_FAIL[$t]:=$rate}"
      fi
    done
    # Courier decides when to stop (without it, the last proxy measured).
    lead=courier; on "$TARGETS" courier || lead=${targets[-1]}
    [[ -n ${FIRST_FAIL[$lead]:-} ]] && break
    rate=$(awk -v r="$rate" -v s="$STEP" 'BEGIN {printf "%d", r * s}')
    ((rate <= MAX_RATE)) || break
  done
  for ((i=0; i<REFINE; i++)); do
    lo=${BEST[$lead]:-0} hi=${FIRST_FAIL[$lead]:-}
    [[ -n $hi ]] && ((hi - lo > 1)) || break
    rate=$(( (lo + hi) / 2 ))
    measure_rate "$rate"
    if [[ ${HELD[$lead]} == yes ]]; then BEST[$lead]=$rate; else FIRST_FAIL[$lead]=$rate; fi
    for t in "${targets[@]}"; do
      [[ $t == "$lead" ]] && continue
      if [[ ${HELD[$t]} == yes ]] && ((rate > ${BEST[$t]:-0})); then BEST[$t]=$rate; fi
    done
  done
  echo
  echo "================ what this box sustains (highest rate held: fast p99 added <= $BOUND_MS ms, no errors)"
  for t in "${targets[@]}"; do
    printf '  %-8s %s req/s%s\n' "$t" "${BEST[$t]:-none (not even $RATE)}" \
      "$([[ -z ${FIRST_FAIL[$t]:-} ]] && echo " (held at every rate tried)" || echo ", not at ${FIRST_FAIL[$t]}")"
  done
else
  measure_rate "$RATE"
fi
echo
echo "raw results: $RESULTS (per class), $CPU_TSV (proxy CPU), per-request records in $OUT/records"
