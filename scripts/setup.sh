#!/usr/bin/env bash
# Installs the Debian 12 packages Courier needs (only those missing) and builds it.
# Usage: scripts/setup.sh [--no-build] [extra cmake -D options...]. Safe to run again.
# COURIER_BUILD_TARGETS="a b": build only those targets (scripts/up.sh builds just its binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build tools and libraries (docs/development.md says why each is here).
PACKAGES=(
  g++ cmake ninja-build pkg-config ccache
  cppzmq-dev libzmq3-dev libmsgpack-cxx-dev libboost-dev libspdlog-dev
  nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  curl
  # gateway: /metrics via the Prometheus client library, JWT verification via libjwt
  prometheus-cpp-dev libjwt-dev
)
PACKAGES+=(${COURIER_EXTRA_PACKAGES:-})

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} packages (a few minutes on a fresh system): ${missing[*]}"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  # apt's own output is long; summarise it so that minutes of work are not silent.
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" 2>&1 | awk '
    /^Need to get/ { print "setup: " $0; fflush() }
    /^Get:/ { if (++got % 25 == 0) { print "setup: downloaded " got " packages"; fflush() } }
    /^Setting up/ { if (++done % 25 == 0) { print "setup: set up " done " packages"; fflush() } }
    /^(E|W): / { print "setup: " $0; fflush() }
    END { print "setup: " got + 0 " downloaded, " done + 0 " set up" }'
fi

[[ "${1:-}" == "--no-build" ]] && exit 0

BUILD_DIR=${COURIER_BUILD_DIR:-build}
launcher=()
# ccache (when present) with paths relative to the checkout, so another clone reuses the cache.
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${COURIER_BUILD_TYPE:-Release}" \
  "${launcher[@]}" "$@" >/dev/null
targets=(${COURIER_BUILD_TARGETS:-})
echo "setup: building ${targets[*]:-everything} in $BUILD_DIR (first time: several minutes)"
cmake --build "$BUILD_DIR" -j"$(nproc)" ${targets[@]:+--target "${targets[@]}"}
