#!/usr/bin/env bash
# Builds Courier with its tests and runs the whole suite (unit and integration).
# Usage: scripts/test.sh [ctest args...], e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
# Test-only tools: Chromium renders the dashboard (libpng-dev reads its screenshots),
# docker-compose validates compose.yaml offline; python3-jsonschema checks docs/openapi.yaml against
# the OpenAPI 3.0 schema that openapi-specification ships; promtool (prometheus) checks /metrics
# and the observability profile's config and rules.
COURIER_EXTRA_PACKAGES="chromium libpng-dev docker-compose python3-jsonschema python3-yaml openapi-specification prometheus ${COURIER_EXTRA_PACKAGES:-}" \
  scripts/setup.sh -DCOURIER_BUILD_TESTS=ON
BUILD_DIR=${COURIER_BUILD_DIR:-build}
# Tests start real processes on loopback; each has its own deadline, ctest adds a hard cap.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 300 "$@"
