# Sourced by the load, fault, stream and mix benchmarks: installs the Debian tools they drive (wrk,
# NGINX, curl, jq, and Debian's python3 for the stream and mix clients) when missing and sets
# NGINX to its binary. As root it installs; otherwise it says what to install and exits.
# $BENCH_NAME prefixes its messages.
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
[[ -x /usr/bin/python3 ]] || need+=(python3)
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
