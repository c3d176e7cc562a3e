#!/usr/bin/env bash
# Builds broker_bench (Release) and prints round trips per second through the broker for
# N echo workers x K requests in flight, loopback TCP only.
#   bench/run_broker_bench.sh            broker in-process (on its own thread)
#   bench/run_broker_bench.sh --binary   the real courier-broker process; also prints its CPU
#                                        time (main + ZeroMQ I/O thread) per round trip
# Further arguments go to broker_bench, e.g. --seconds 5 --workers 1,4 --inflight 1,16,64.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${COURIER_BENCH_BUILD:-$root/build-broker}"
binary=0
if [[ "${1:-}" == "--binary" ]]; then binary=1; shift; fi
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOURIER_BUILD_BENCH=ON >/dev/null
cmake --build "$build" --target broker_bench courier-broker >/dev/null
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
args=(--seconds 2 --workers 1,2,4 --inflight 1,64 "$@")
if [[ $binary == 0 ]]; then
  "$build/bench/broker_bench" "${args[@]}" 2>/dev/null
else
  front="tcp://127.0.0.1:${COURIER_BENCH_FRONT_PORT:-47555}"
  back="tcp://127.0.0.1:${COURIER_BENCH_BACK_PORT:-47556}"
  "$build/broker/courier-broker" --frontend "$front" --backend "$back" --log-level warn &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
  before=$(cpu_ticks)
  replies_file=$(mktemp)
  "$build/bench/broker_bench" "${args[@]}" --connect "$front" "$back" 2>"$replies_file"
  after=$(cpu_ticks)
  replies=$(awk '/^replies/{n += $2} END{print n}' "$replies_file")
  rm -f "$replies_file"
  awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$replies" \
    'BEGIN{printf "# courier-broker process CPU: %.1f s for %d round trips = %.2f us per round trip\n", t/hz, n, t/hz*1e6/n}'
fi
echo "# after: load average $(cut -d' ' -f1-3 /proc/loadavg)"
