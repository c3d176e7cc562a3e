#!/usr/bin/env bash
# Streaming benchmark: the demo upstream's streaming routes reached directly, through NGINX
# (proxy_buffering off) and through Courier (broker + gateway + worker), all in one run:
#   1. time to first byte and the gap between consecutive characters of a riddle stream
#      (GET /play/riddle/1: THINK_MS, then one character every INTERVAL_MS), STREAMS at a time
#   2. throughput of one large chunked body (GET /bytes/BYTES?chunk=CHUNK), MB/s, via curl
#   3. memory per open stream: RSS of the proxy's processes with HOLD_STREAMS slow streams open
#      (one character per second) minus their RSS just before, divided by HOLD_STREAMS
# Everything runs on 127.0.0.1 and is stopped on exit. See docs/performance.md ("Streaming").
#
# Usage: bench/stream/run.sh [--quick] [--targets direct,nginx,courier] [--parts 1,2,3]
#   --quick        fewer rounds (1 riddle round, 1 throughput round, 64 MiB)
#   --targets L    comma-separated subset of direct,nginx,courier (default: all three)
#   --parts L      comma-separated subset of 1,2,3
# Environment (defaults in brackets):
#   COURIER_BUILD_DIR [build]  UPSTREAM_THREADS [1]  GATEWAY_THREADS [1]
#   THINK_MS [100]  INTERVAL_MS [50]  CHARS [40]  STREAMS [20]  ROUNDS [3]
#   BYTES [268435456]  CHUNK [65536]  THROUGHPUT_ROUNDS [3]  HOLD_STREAMS [200]  HOLD_S [5]
#   PORT_BASE [18500] (uses PORT_BASE+1..+5)  BENCH_OUT [run/bench-stream]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

TARGETS=direct,nginx,courier
PARTS=1,2,3
QUICK=0
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --targets) TARGETS=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

BIN=${COURIER_BUILD_DIR:-build}
UPSTREAM_THREADS=${UPSTREAM_THREADS:-1}
GATEWAY_THREADS=${GATEWAY_THREADS:-1}
THINK_MS=${THINK_MS:-100}
INTERVAL_MS=${INTERVAL_MS:-50}
CHARS=${CHARS:-40}
STREAMS=${STREAMS:-20}
ROUNDS=${ROUNDS:-3}
BYTES=${BYTES:-268435456}
CHUNK=${CHUNK:-65536}
THROUGHPUT_ROUNDS=${THROUGHPUT_ROUNDS:-3}
HOLD_STREAMS=${HOLD_STREAMS:-200}
HOLD_S=${HOLD_S:-5}
if ((QUICK)); then ROUNDS=1; THROUGHPUT_ROUNDS=1; BYTES=$((64 << 20)); fi
PORT_BASE=${PORT_BASE:-18500}
UP_PORT=$((PORT_BASE + 1)) NGINX_PORT=$((PORT_BASE + 2)) GW_PORT=$((PORT_BASE + 3))
BR_FRONT=$((PORT_BASE + 4)) BR_BACK=$((PORT_BASE + 5)) ADMIN_PORT=$((PORT_BASE + 6))
OUT=${BENCH_OUT:-run/bench-stream}
HERE=$ROOT/bench/stream
CLIENT=(python3 "$HERE/stream_client.py")

on() { [[ ,$1, == *,$2,* ]]; }  # on LIST ITEM

# ---------------------------------------------------------------- prerequisites
BENCH_NAME=bench-stream source bench/prerequisites.sh
command -v python3 >/dev/null || { echo "bench-stream: python3 is needed for the timing client" >&2; exit 1; }

need_bins=("$BIN/demo/courier-demo-upstream")
on "$TARGETS" courier && need_bins+=("$BIN/gateway/courier-gateway" "$BIN/broker/courier-broker" "$BIN/workers/courier-worker")
for b in "${need_bins[@]}"; do
  if [[ ! -x $b ]]; then
    echo "bench-stream: $b missing; building Courier (Release) in $BIN via scripts/setup.sh"
    extra=()
    [[ -f $BIN/CMakeCache.txt ]] || extra=(-DCOURIER_BUILD_TESTS=OFF -DCOURIER_BUILD_BENCH=OFF)
    COURIER_BUILD_DIR=$BIN COURIER_BUILD_TYPE=Release scripts/setup.sh "${extra[@]}"
    break
  fi
done
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BIN/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || echo "bench-stream: WARNING: $BIN is a '${build_type:-unknown}' build, not Release" >&2
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for port in $UP_PORT $NGINX_PORT $GW_PORT $BR_FRONT $BR_BACK $ADMIN_PORT; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    echo "bench-stream: port $port is in use; set PORT_BASE to a free range" >&2
    exit 1
  fi
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs
rm -rf "$LOGS" "$OUT/nginx"
mkdir -p "$LOGS" "$OUT/nginx"
RESULTS=$OUT/results.tsv
echo -e "part\ttarget\tmetric\tvalue" >"$RESULTS"

# ---------------------------------------------------------------- processes
declare -A PROC   # name -> pid
ORDER=()
start() {  # start NAME CMD...: in the background, output to $LOGS/NAME.log
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PROC[$name]=$!
  ORDER+=("$name")
}
CLIENT_PID=""
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
      kill -0 "${PROC[$name]}" 2>/dev/null || { echo "bench-stream: $name exited; see $LOGS/$name.log" >&2; exit 1; }
    done
    ((SECONDS < deadline)) || { echo "bench-stream: timed out waiting for: $*" >&2; exit 1; }
    sleep 0.1
  done
}
http_ok() { curl -fsS -m 5 -o /dev/null "$1"; }
courier_ready() {
  curl -fsS -m 2 "http://127.0.0.1:$ADMIN_PORT/services" |
    jq -e '.broker_connected and (.services["rule-engine"].workers >= 1)'
}
rss_kib() {  # rss_kib PID...: summed VmRSS
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
courier_pids() { echo "${PROC[broker]}"; echo "${PROC[gateway]}"; echo "${PROC[worker]}"; }
nginx_pids() { echo "${PROC[nginx]}"; pgrep -P "${PROC[nginx]}" || true; }
pids_of() { "${1}_pids"; }
base_url() {
  case $1 in
    direct) echo "http://127.0.0.1:$UP_PORT" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT/rule-engine" ;;
    courier) echo "http://127.0.0.1:$GW_PORT/rule-engine" ;;
  esac
}
median() { printf '%s\n' "$@" | sort -g | awk 'NF {a[++n] = $1} END {if (n) print (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2); else print "-"}'; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

start "upstream" "$BIN/demo/courier-demo-upstream" --role rule-engine --listen "127.0.0.1:$UP_PORT" \
  --threads "$UPSTREAM_THREADS" --log-level warn
wait_until 10 http_ok "http://127.0.0.1:$UP_PORT/health"
if on "$TARGETS" nginx; then
  prefix=$OUT/nginx
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@UPSTREAM_PORT@|$UP_PORT|g" -e "s|@LISTEN_PORT@|$NGINX_PORT|g" \
      "$HERE/nginx.conf" >"$prefix/nginx.conf"
  "$NGINX" -t -q -p "$prefix" -c "$prefix/nginx.conf" 2>"$LOGS/nginx-test.log" ||
    { cat "$LOGS/nginx-test.log" >&2; exit 1; }
  start nginx "$NGINX" -p "$prefix" -c "$prefix/nginx.conf"
  wait_until 10 http_ok "http://127.0.0.1:$NGINX_PORT/rule-engine/health"
fi
if on "$TARGETS" courier; then
  # Access log off (warn level, like NGINX's access_log off); enough worker slots for the held
  # streams plus a riddle round, so nothing queues.
  export RULE_ENGINE_URL=http://127.0.0.1:$UP_PORT AI_GM_URL=http://127.0.0.1:9
  export COURIER_LOG_LEVEL=warn COURIER_ACCESS_LOG=false COURIER_MAX_CONNECTIONS=4096 COURIER_MAX_QUEUE=4096
  concurrency=$((HOLD_STREAMS + 2 * STREAMS + 64))
  export COURIER_WORKER_CONCURRENCY=$concurrency
  start broker "$BIN/broker/courier-broker" --frontend "tcp://127.0.0.1:$BR_FRONT" \
    --backend "tcp://127.0.0.1:$BR_BACK" --id bench-stream
  start worker "$BIN/workers/courier-worker" --service rule-engine \
    --broker "tcp://127.0.0.1:$BR_BACK" --id bench-stream-1 --concurrency "$concurrency"
  start gateway "$BIN/gateway/courier-gateway" --listen "127.0.0.1:$GW_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --broker "tcp://127.0.0.1:$BR_FRONT" --threads "$GATEWAY_THREADS" \
    --max-connections 4096 --max-connections-per-client 0
  wait_until 15 courier_ready
  wait_until 10 http_ok "http://127.0.0.1:$GW_PORT/rule-engine/health"
fi

IFS=, read -r -a targets <<<"$TARGETS"
declare -A RSS_START
for t in "${targets[@]}"; do
  # One short stream through each path first, so the measured runs pay no first-use costs.
  curl -fsS -m 10 -o /dev/null "$(base_url "$t")/play/riddle/0?think_ms=0&interval_ms=1&chars=8"
  [[ $t == direct ]] || { mapfile -t pids < <(pids_of "$t"); RSS_START[$t]=$(rss_kib "${pids[@]}"); }
done

echo "Courier streaming benchmark: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(curl --version | head -1 | cut -d' ' -f1-2), $(python3 -V)"
echo "Courier: $BIN (${build_type:-?}), 1 broker, 1 worker, gateway --threads $GATEWAY_THREADS; NGINX: 1 worker, proxy_buffering off; upstream: --threads $UPSTREAM_THREADS"
echo "logs and raw results: $OUT"
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2 "; }

# ---------------------------------------------------------------- 1. first byte and gaps
if on "$PARTS" 1; then
  echo
  echo "1. riddle stream: think ${THINK_MS} ms, then $CHARS characters ${INTERVAL_MS} ms apart; $STREAMS streams at a time, $ROUNDS round(s)"
  printf '  %-8s %5s %6s %9s %9s %9s %9s %9s %9s %9s %7s\n' target ok trunc "ttfb p50" "ttfb p99" \
    "1st p50" "gap p50" "gap p99" "gap max" "p99-int" merged
  for t in "${targets[@]}"; do
    url="$(base_url "$t")/play/riddle/1?think_ms=$THINK_MS&interval_ms=$INTERVAL_MS&chars=$CHARS"
    timeout=$(( (THINK_MS + CHARS * INTERVAL_MS) / 1000 + 30 ))
    line=$("${CLIENT[@]}" events "$url" --streams "$STREAMS" --rounds "$ROUNDS" \
             --interval-ms "$INTERVAL_MS" --timeout "$timeout" 2>"$LOGS/client-events-$t.log" || true)
    echo "$t $line" >>"$LOGS/client-events.txt"
    [[ $line == RESULT* ]] || { echo "  $t: client failed, see $LOGS/client-events-$t.log"; continue; }
    for m in ok truncated failed ttfb_p50_ms ttfb_p99_ms first_p50_ms first_p99_ms gap_p50_ms gap_p99_ms gap_max_ms excess_p99_ms merged gaps; do
      record 1 "$t" "$m" "$(kv "$m" "$line")"
    done
    printf '  %-8s %5s %6s %9s %9s %9s %9s %9s %9s %9s %7s\n' "$t" "$(kv ok "$line")" \
      "$(kv truncated "$line")" "$(kv ttfb_p50_ms "$line")" "$(kv ttfb_p99_ms "$line")" \
      "$(kv first_p50_ms "$line")" "$(kv gap_p50_ms "$line")" "$(kv gap_p99_ms "$line")" \
      "$(kv gap_max_ms "$line")" "$(kv excess_p99_ms "$line")" "$(kv merged "$line")/$(kv gaps "$line")"
  done
  echo "  (ms; 'merged': characters that arrived within a tenth of the interval of the one before)"
fi

# ---------------------------------------------------------------- 2. throughput
if on "$PARTS" 2; then
  echo
  echo "2. throughput: GET /bytes/$BYTES?chunk=$CHUNK (chunked), one connection, median of $THROUGHPUT_ROUNDS"
  for t in "${targets[@]}"; do
    url="$(base_url "$t")/bytes/$BYTES?chunk=$CHUNK"
    speeds=() ttfbs=() bad=0
    for ((r=1; r<=THROUGHPUT_ROUNDS; r++)); do
      out=$(curl -sS -m 300 -o /dev/null -w '%{http_code} %{size_download} %{time_starttransfer} %{time_total}' "$url" 2>>"$LOGS/curl-$t.log" || true)
      read -r code size ttfb total <<<"$out"
      if [[ $code != 200 || $size != "$BYTES" ]]; then
        bad=$((bad + 1)); echo "  $t round $r: status ${code:-none}, $size of $BYTES bytes" >&2; continue
      fi
      speeds+=("$(awk -v s="$size" -v t="$total" 'BEGIN {printf "%.1f", s / t / 1e6}')")
      ttfbs+=("$(awk -v t="$ttfb" 'BEGIN {printf "%.2f", t * 1000}')")
    done
    mbps=$(median "${speeds[@]}") first=$(median "${ttfbs[@]}")
    record 2 "$t" mb_per_s "$mbps"; record 2 "$t" ttfb_ms "$first"; record 2 "$t" failed "$bad"
    printf '  %-8s %9s MB/s  (rounds: %s)  first byte %s ms  failed %d\n' "$t" "$mbps" "${speeds[*]:-none}" "$first" "$bad"
  done
fi

# ---------------------------------------------------------------- 3. memory per open stream
if on "$PARTS" 3; then
  echo
  echo "3. memory: $HOLD_STREAMS open riddle streams (one character per second), RSS of the proxy's processes"
  for t in "${targets[@]}"; do
    [[ $t == direct ]] && continue
    mapfile -t pids < <(pids_of "$t")
    # The baseline is taken now, after parts 1 and 2: memory the allocator kept from them is not
    # charged to the open streams.
    before=$(rss_kib "${pids[@]}")
    declare -A before_of=() held_of=()
    for pid in "${pids[@]}"; do before_of[$pid]=$(rss_kib "$pid"); held_of[$pid]=0; done
    url="$(base_url "$t")/play/riddle/2?think_ms=0&interval_ms=1000&chars=$((HOLD_S + 40))"
    hold_log=$LOGS/client-hold-$t.txt
    "${CLIENT[@]}" hold "$url" --streams "$HOLD_STREAMS" --ready-timeout 20 --hold "$HOLD_S" \
      >"$hold_log" 2>&1 &
    CLIENT_PID=$!
    deadline=$((SECONDS + 60))
    until grep -q '^READY' "$hold_log" 2>/dev/null || ((SECONDS > deadline)); do sleep 0.1; done
    ready_line=$(grep '^READY' "$hold_log" || echo "READY ready=0")
    held=0
    for _ in $(seq 1 $((HOLD_S * 2 - 1))); do
      r=$(rss_kib "${pids[@]}"); ((r > held)) && held=$r
      for pid in "${pids[@]}"; do
        r=$(rss_kib "$pid"); ((r > held_of[$pid])) && held_of[$pid]=$r
      done
      sleep 0.5
    done
    # Where it goes: each process's growth per open stream.
    breakdown=""
    for pid in "${pids[@]}"; do
      name=$(cat "/proc/$pid/comm" 2>/dev/null || echo "$pid")
      breakdown+=$(awk -v n="$name" -v a="${held_of[$pid]}" -v b="${before_of[$pid]}" -v k="$HOLD_STREAMS" \
        'BEGIN {printf " %s %.1f", n, (a - b) / k}')
    done
    wait "$CLIENT_PID" || true
    CLIENT_PID=""
    ready=$(kv ready "$ready_line"); ready=${ready:-0}
    per=$(awk -v a="$held" -v b="$before" -v n="$HOLD_STREAMS" 'BEGIN {printf "%.1f", (a - b) / n}')
    record 3 "$t" rss_start_kib "${RSS_START[$t]}"; record 3 "$t" rss_before_kib "$before"
    record 3 "$t" rss_held_kib "$held"; record 3 "$t" ready "$ready"; record 3 "$t" kib_per_stream "$per"
    printf '  %-8s RSS at start %6.1f MiB, before %6.1f MiB, with the streams open %6.1f MiB: %6s KiB per open stream (%s of %d streaming)\n' \
      "$t" "$(awk -v x="${RSS_START[$t]}" 'BEGIN {print x / 1024}')" "$(awk -v x="$before" 'BEGIN {print x / 1024}')" \
      "$(awk -v x="$held" 'BEGIN {print x / 1024}')" "$per" "$ready" "$HOLD_STREAMS"
    echo "           per process (KiB per open stream):$breakdown"
    if ((ready != HOLD_STREAMS)); then
      result_line=$(grep '^RESULT' "$hold_log" || true)
      echo "  $t: only $ready of $HOLD_STREAMS streams had a 200 head and a character when the RSS was sampled (buffered?); statuses $(kv statuses "$result_line")"
    fi
  done
fi
echo
echo "raw results: $RESULTS"
