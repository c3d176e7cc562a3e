# Sourced by the load and fault benchmarks: installs the Debian tools they drive (wrk, NGINX,
# curl, jq) when missing and sets NGINX to its binary. As root it installs; otherwise it says what
# to install and exits. $BENCH_NAME prefixes its messages.
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "${BENCH_NAME:-bench}: missing ${need[*]}; install with: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "${BENCH_NAME:-bench}: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
