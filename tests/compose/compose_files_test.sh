#!/usr/bin/env bash
# Checks every supported combination of compose files with docker-compose 1.29 (no engine needed):
# each parses, the upstream URLs are required unless the demo runs, the demo upstreams start
# before the workers, and .env.example lists every variable the files read.
# Usage: compose_files_test.sh DOCKER_COMPOSE SOURCE_DIR
set -uo pipefail
dc=$1
cd "$2" || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/empty.env"
printf 'RULE_ENGINE_URL=http://rules:8000\nAI_GM_URL=http://gm:8000\n' >"$work/urls.env"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# A .env in the checkout or a variable in the caller's environment must not change the outcome.
compose() { env -u RULE_ENGINE_URL -u AI_GM_URL -u COMPOSE_FILE -u COMPOSE_PROFILES "$dc" "$@"; }

expect_valid() {  # expect_valid NAME ARGS...
  local name=$1; shift
  if out=$(compose "$@" config -q 2>&1); then echo "ok: $name"; else fail "$name: $out"; fi
}
expect_valid "compose.yaml with the URLs set" --env-file "$work/urls.env" -f compose.yaml
expect_valid "compose.yaml with .env.example" --env-file .env.example -f compose.yaml
expect_valid "two brokers" --env-file "$work/urls.env" -f compose.yaml -f compose.ha.yaml
expect_valid "demo (demo.env)" --env-file demo.env
expect_valid "demo with two brokers" --env-file demo.env -f compose.yaml -f compose.demo.yaml \
  -f compose.ha.yaml

# Without URLs and without the demo: refused, naming the variable and what to do.
for var in RULE_ENGINE_URL AI_GM_URL; do
  if out=$(compose --env-file "$work/empty.env" -f compose.yaml config -q 2>&1); then
    fail "compose.yaml without $var was accepted"
  elif [[ "$out" != *"set $var"*"--env-file demo.env"* ]]; then
    fail "compose.yaml without $var: message does not say what to do: $out"
  else
    echo "ok: compose.yaml without $var is refused"
  fi
  # Set only the other one.
  other=$([[ $var == RULE_ENGINE_URL ]] && echo AI_GM_URL || echo RULE_ENGINE_URL)
  printf '%s=http://x:1\n' "$other" >"$work/one.env"
  if compose --env-file "$work/one.env" -f compose.yaml config -q >/dev/null 2>&1; then
    fail "compose.yaml with only $other set was accepted"
  fi
done

# The demo: demo.env names the overlay, the workers wait for healthy demo upstreams, and every
# long-running service has a health check.
if config=$(compose --env-file demo.env config 2>&1); then
  python3 - "$config" <<'PY' || failures=$((failures + 1))
import sys, yaml
config = yaml.safe_load(sys.argv[1])
services = config["services"]
errors = []
want = {"worker-rule-engine": ["broker", "demo-rule-engine"],
        "worker-ai-gm": ["broker", "demo-ai-gm"], "gateway": ["broker"]}
for name, deps in want.items():
    for dep in deps:
        condition = services[name].get("depends_on", {}).get(dep, {}).get("condition")
        if condition != "service_healthy":
            errors.append(f"{name} does not wait for {dep} to be healthy ({condition})")
for name, service in services.items():
    # The observability profile runs third-party images (Prometheus, Grafana): their own logs.
    if "observability" in service.get("profiles", []):
        continue
    if name != "keys" and "test" not in service.get("healthcheck", {}):
        errors.append(f"{name} has no health check")
    if name != "keys" and service["environment"].get("COURIER_DEMO_LOG_FORMAT",
            service["environment"].get("COURIER_LOG_FORMAT")) != "json":
        errors.append(f"{name} does not log json by default")
ports = services["gateway"]["ports"]
if not all(str(p.get("host_ip", p) if isinstance(p, dict) else p).startswith("127.0.0.1")
           for p in ports):
    errors.append(f"gateway published beyond loopback by default: {ports}")
for e in errors: print("FAIL:", e)
if not errors: print("ok: demo order, health checks, log format, loopback publishing")
sys.exit(1 if errors else 0)
PY
else
  fail "demo config: $config"
fi

# .env.example lists every variable the compose files read (COMPOSE_FILE is demo.env's own).
for var in $(grep -oh '\${[A-Z_][A-Z0-9_]*' compose*.yaml | sed 's/^\${//' | sort -u); do
  grep -q "^$var=" .env.example || fail ".env.example lacks $var"
done

((failures == 0)) && echo "all compose checks passed" || echo "$failures compose check(s) failed"
exit $((failures > 0))
