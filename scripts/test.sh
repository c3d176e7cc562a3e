#!/usr/bin/env bash
# Builds Courier with its tests and runs the whole suite (unit and integration).
# Usage: scripts/test.sh [ctest args...], e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
# Test-only tools: Chromium renders the dashboard, docker-compose validates compose.yaml offline.
COURIER_EXTRA_PACKAGES="chromium docker-compose prometheus ${COURIER_EXTRA_PACKAGES:-}" \
  scripts/setup.sh -DCOURIER_BUILD_TESTS=ON
BUILD_DIR=${COURIER_BUILD_DIR:-build}
# Tests start real processes on loopback; each has its own deadline, ctest adds a hard cap.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 300 "$@"
