#!/usr/bin/env bash
# Builds and runs the tests under sanitizers: ASan+UBSan (unit and integration), TSan (unit).
# Usage: scripts/sanitize.sh [asan|tsan|all]
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}
scripts/setup.sh --no-build
launcher=()
# ccache (when present) with paths relative to the checkout, so another clone reuses the cache.
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1

if [[ $WHICH == asan || $WHICH == all ]]; then
  # -O1: sanitizer builds of coroutine-heavy Beast code are slow to compile at -O2.
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1 -Wno-mismatched-new-delete" -DCOURIER_BUILD_BENCH=OFF \
    -DCOURIER_SANITIZE=address,undefined "${launcher[@]}" >/dev/null
  cmake --build build-asan -j"$(nproc)"
  # Child processes (the real binaries) inherit these: any report fails the test that started them.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 300
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if [[ $WHICH == tsan || $WHICH == all ]]; then
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1 -Wno-mismatched-new-delete" -DCOURIER_BUILD_BENCH=OFF \
    -DCOURIER_SANITIZE=thread -DCMAKE_CXX_FLAGS_INIT=-Wno-tsan "${launcher[@]}" >/dev/null
  cmake --build build-tsan -j"$(nproc)"
  # libzmq is not instrumented: its internal hand-offs are invisible to TSan (tests/tsan.supp).
  # Unit tests only: under TSan the processes run 5-15x slower, and the integration tests'
  # 100 ms heartbeats then declare live peers dead (ASan above covers those tests).
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
  ctest --test-dir build-tsan --output-on-failure -j"$(nproc)" --timeout 600 -L unit
fi
