#!/usr/bin/env bash
# Proves the compose topology on a real Docker engine (Debian's docker.io and docker-compose 1.29):
# starts a private dockerd (vfs storage), makes the debian:bookworm-slim base with debootstrap when
# no registry answers, builds the image, runs the demo topology, sends requests, scales a pool,
# kills a worker under load (every request must end 200 or a Courier JSON error, none may hang),
# brings it down and stops dockerd. Every step is bounded and timed; anything failing fails loudly.
#   COURIER_CI_IMAGE_BUILD=prebuilt (default when COURIER_BUILD_DIR holds the binaries: they are
#     copied into the image, built and tested on this same Debian 12 host) or source (compile in
#     the image: about 11 min on 2 shared cores)
#   COURIER_BUILD_DIR=build  COURIER_CI_DOCKER_ROOT=DIR (keep dockerd's data, e.g. the base image,
#     between runs; default: a temporary directory, removed on exit)
#   COURIER_CI_COMPOSE_FILES=compose.yaml:compose.demo.yaml (more overlays: append :FILE)
set -euo pipefail
cd "$(dirname "$0")/.."
total_start=$SECONDS
say() { echo "compose-ci: $*"; }
step() {  # step SECONDS NAME CMD...: runs CMD (a command or a function) bounded, prints its time
  local limit=$1 name=$2; shift 2
  local started=$SECONDS status=0
  say "$name ..."
  ( "$@" ) &
  local pid=$!
  # The watchdog ends the step's processes (by pid) when it overruns.
  ( sleep "$limit"; say "TIMEOUT: $name after $limit s"; pkill -TERM -P "$pid"; kill -TERM "$pid" ) \
    2>/dev/null &
  local watchdog=$!
  wait "$pid" || status=$?
  kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null || true
  if ((status != 0)); then
    say "FAILED: $name (status $status after $((SECONDS - started)) s, limit $limit s)"
    return "$status"
  fi
  say "$name: $((SECONDS - started)) s"
}

[[ $(id -u) -eq 0 ]] || { say "needs root (it starts dockerd)"; exit 1; }
COURIER_EXTRA_PACKAGES="docker.io docker-compose debootstrap ${COURIER_EXTRA_PACKAGES:-}" \
  step 900 "install docker.io, docker-compose, debootstrap if missing" scripts/setup.sh --no-build

# Debian's client, not another one earlier on PATH; a private daemon on its own socket.
DOCKER=/usr/bin/docker
work=$(mktemp -d /tmp/courier-compose-ci.XXXXXX)
root=${COURIER_CI_DOCKER_ROOT:-$work/data}
export DOCKER_HOST="unix://$work/docker.sock"
project=courierci
files=${COURIER_CI_COMPOSE_FILES:-compose.yaml:compose.demo.yaml}
compose_args=(--env-file demo.env -p "$project")
IFS=: read -ra file_list <<<"$files"
for f in "${file_list[@]}"; do compose_args+=(-f "$f"); done
compose() { docker-compose "${compose_args[@]}" "$@"; }
dockerd_pid=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$dockerd_pid" ]] && kill -0 "$dockerd_pid" 2>/dev/null; then
    if ((status != 0)); then
      say "logs of the failed run (tail):"
      timeout 30 docker-compose "${compose_args[@]}" logs --no-color --tail=30 2>&1 | tail -120 || true
    fi
    timeout 240 docker-compose "${compose_args[@]}" down -v --timeout 20 >/dev/null 2>&1 || true
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf prebuilt
  # vfs layers are plain directories; the private data root goes unless asked to keep it.
  [[ -n "${COURIER_CI_DOCKER_ROOT:-}" ]] || rm -rf "$work/data"
  rm -rf "$work"
  say "$([[ $status == 0 ]] && echo passed || echo FAILED) after $((SECONDS - total_start)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_dockerd() {
  mkdir -p "$root" "$work/exec"
  /usr/sbin/dockerd --storage-driver=vfs --data-root="$root" --exec-root="$work/exec" \
    --pidfile="$work/dockerd.pid" -H "$DOCKER_HOST" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 300); do
    "$DOCKER" info >/dev/null 2>&1 && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.2
  done
  say "dockerd did not start; its log:"; tail -30 "$work/dockerd.log"
  return 1
}
# Not through step: dockerd must outlive it (start_dockerd bounds itself at 60 s).
say "start dockerd (vfs, data in $root) ..."
dockerd_start=$SECONDS
start_dockerd
say "start dockerd: $((SECONDS - dockerd_start)) s ($("$DOCKER" version -f '{{.Server.Version}}'))"

base_image() {
  "$DOCKER" image inspect debian:bookworm-slim >/dev/null 2>&1 && { say "base image present"; return 0; }
  if timeout 60 "$DOCKER" pull debian:bookworm-slim >/dev/null 2>&1; then say "base image pulled"; return 0; fi
  # No registry: the same Debian 12 from the mirror apt already uses.
  local mirror
  mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
             /etc/apt/sources.list.d/ 2>/dev/null | head -1 | awk '{print $2}') || true
  say "no registry: debootstrap --variant=minbase bookworm from ${mirror:-http://deb.debian.org/debian}"
  debootstrap --variant=minbase bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; return 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$work/rootfs" -c . | "$DOCKER" import - debian:bookworm-slim >/dev/null
  rm -rf "$work/rootfs"
}
step 600 "base image debian:bookworm-slim" base_image

BUILD_DIR=${COURIER_BUILD_DIR:-build}
binaries=("$BUILD_DIR/broker/courier-broker" "$BUILD_DIR/gateway/courier-gateway"
          "$BUILD_DIR/workers/courier-worker" "$BUILD_DIR/demo/courier-demo-upstream"
          "$BUILD_DIR/keys/courier-keys")
mode=${COURIER_CI_IMAGE_BUILD:-}
if [[ -z "$mode" ]]; then
  mode=source
  ls "${binaries[@]}" >/dev/null 2>&1 && mode=prebuilt
fi
revision=$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
build_args=(--build-arg "COURIER_REVISION=$revision")
if [[ $mode == prebuilt ]]; then
  # The binaries link against this host's Debian 12 libraries: the runtime stage installs the same.
  grep -q '^VERSION_ID="12"' /etc/os-release || { say "prebuilt binaries need a Debian 12 host"; exit 1; }
  rm -rf prebuilt && install -D -t prebuilt "${binaries[@]}"
  build_args+=(--build-arg COURIER_PREBUILT=prebuilt)
fi
step 1800 "docker build ($mode binaries, revision $revision)" \
  "$DOCKER" build -q "${build_args[@]}" -t courier:latest .
"$DOCKER" image ls courier:latest --format 'compose-ci: image {{.Repository}}:{{.Tag}} {{.Size}}'
"$DOCKER" run --rm courier:latest courier-gateway --help >/dev/null \
  || { say "the image's gateway does not run"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export COURIER_PORT COURIER_ADMIN_PORT DEMO_AI_GM_LATENCY=uniform:100:300
COURIER_PORT=$(free_port); COURIER_ADMIN_PORT=$(free_port)
base="http://127.0.0.1:$COURIER_PORT"
# docker-compose 1.29 waits for each service_healthy dependency during `up`.
step 300 "docker-compose --env-file demo.env up -d (healthy in order)" compose up -d --no-build

wait_healthy() {  # wait_healthy SERVICE COUNT
  local service=$1 count=$2
  while :; do
    local ids healthy=0
    ids=$(compose ps -q "$service")
    for id in $ids; do
      [[ $("$DOCKER" inspect -f '{{.State.Health.Status}}' "$id") == healthy ]] && healthy=$((healthy + 1))
    done
    ((healthy == count)) && return 0
    sleep 0.5
  done
}
all_healthy() {
  wait_healthy broker 1 && wait_healthy gateway 1 && wait_healthy worker-rule-engine 2 &&
    wait_healthy worker-ai-gm 2 && wait_healthy demo-rule-engine 1 && wait_healthy demo-ai-gm 1
}
step 120 "every service healthy" all_healthy

requests() {
  for i in $(seq 1 10); do
    curl -fsS --max-time 20 -o /dev/null "$base/rule-engine/health"
    curl -fsS --max-time 20 -o /dev/null -X POST "$base/ai-gm/api/v1/game/turn" -d '{"action":"look"}'
  done
}
step 60 "20 requests through the gateway, all 200" requests

step 120 "scale worker-ai-gm to 3" compose up -d --no-build --no-recreate --scale worker-ai-gm=3
step 120 "3 ai-gm workers healthy" wait_healthy worker-ai-gm 3

# 200 POSTs, 20 at a time, one ai-gm worker killed while they run: each ends 200 or a Courier
# JSON error (e.g. 502 WORKER_LOST for a POST the worker held), none hangs past --max-time.
kill_under_load() {
  local out=$work/load
  mkdir -p "$out"
  seq 1 200 | xargs -P 20 -I{} sh -c "curl -sS --max-time 60 -o '$out/{}.body' -w '%{http_code}' \
      -X POST '$base/ai-gm/api/v1/game/turn' -d '{\"action\":\"look\"}' >'$out/{}.code' 2>'$out/{}.err'; true" &
  local load=$!
  sleep 1  # part of the load: kill while requests are in flight
  local victim
  # Not `head -1`: it may close the pipe before compose has written every id, and with pipefail
  # the SIGPIPE (status 141) fails the step (seen once in CI).
  victim=$(compose ps -q worker-ai-gm | awk 'NR == 1')
  "$DOCKER" kill "$victim" >/dev/null
  say "killed worker container ${victim:0:12} under load"
  wait "$load"
  python3 - "$out" <<'PY'
import collections, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
tally, bad = collections.Counter(), []
for i in range(1, 201):
    code = (out / f"{i}.code").read_text().strip()
    body = (out / f"{i}.body").read_bytes() if (out / f"{i}.body").exists() else b""
    if code == "200":
        tally["200"] += 1
        continue
    reply = {}
    try:
        reply = json.loads(body)
        ok = isinstance(reply, dict) and reply.get("status") == "error" and isinstance(reply.get("code"), str)
    except ValueError:
        ok = False
    tally[f"{code} {reply.get('code') if ok else '?'}"] += 1
    if not ok:
        bad.append((i, code, body[:200], (out / f"{i}.err").read_text()[:200]))
print("compose-ci: replies:", dict(tally))
for b in bad[:10]:
    print("compose-ci: not 200 and not a Courier error:", b)
sys.exit(1 if bad or tally["200"] < 150 else 0)
PY
}
step 240 "kill a worker under 200 POSTs" kill_under_load

step 240 "docker-compose down -v" compose down -v --timeout 30
say "all steps passed in $((SECONDS - total_start)) s"
