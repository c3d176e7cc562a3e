#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time from the
# corpus in tests/fuzz/corpus. Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
COURIER_EXTRA_PACKAGES="clang libclang-rt-14-dev" scripts/setup.sh --no-build
BUILD_DIR=${COURIER_FUZZ_BUILD_DIR:-build-fuzz}
launcher=()
# ccache (when present) with paths relative to the checkout, so another clone reuses the cache.
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCOURIER_FUZZ=ON -DCOURIER_SANITIZE=address,undefined "${launcher[@]}" >/dev/null
TARGETS=(frames_fuzz envelope_fuzz status_fuzz http_request_fuzz dispatcher_fuzz)
cmake --build "$BUILD_DIR" --target "${TARGETS[@]}"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${TARGETS[@]}"; do
  work=$(mktemp -d)
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
  # New inputs go to a scratch corpus; the committed corpus stays as it is unless copied back.
  "$BUILD_DIR/tests/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 "$work" "tests/fuzz/corpus/$t" 2>&1 | tail -n 12
  rm -rf "$work"
done
