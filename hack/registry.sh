#!/usr/bin/env bash
# A private OCI distribution registry (Debian's docker-registry) on 127.0.0.1.
#
#   hack/registry.sh start DIR [--htpasswd USER:PASS]   prints 127.0.0.1:PORT
#   hack/registry.sh stop DIR
#
# Everything the instance owns (config, storage, log, pid file, htpasswd)
# lives under DIR, so several registries can run side by side.
set -euo pipefail

prog=hack/registry.sh
die() { echo "$prog: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package '$2' (hack/install-deps.sh)"
}

free_port() {
  # The kernel picks an unused port; the tiny race with another binder is
  # handled by retrying the start.
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Distribution's htpasswd accepts only bcrypt entries.
make_htpasswd() {
  local user=$1 pass=$2 out=$3 hash=""
  if command -v htpasswd >/dev/null 2>&1; then
    htpasswd -Bbn "$user" "$pass" >"$out"
    return
  fi
  # python3 < 3.13 has crypt(3), and glibc's libcrypt does bcrypt ($2b$).
  hash=$(PASS="$pass" python3 -W ignore -c '
import crypt, os, sys
h = crypt.crypt(os.environ["PASS"], crypt.mksalt(crypt.METHOD_BLOWFISH))
if not h or not h.startswith("$2"):
    sys.exit(1)
print(h)' 2>/dev/null) || true
  if [ -z "$hash" ]; then
    hash=$(PASS="$pass" python3 -c '
import bcrypt, os
print(bcrypt.hashpw(os.environ["PASS"].encode(), bcrypt.gensalt()).decode())' 2>/dev/null) || true
  fi
  [ -n "$hash" ] || die "cannot make a bcrypt htpasswd entry: install apache2-utils (htpasswd) or python3-bcrypt"
  printf '%s:%s\n' "$user" "$hash" >"$out"
}

# True when PID is the registry serving DIR's config (guards against pid reuse).
is_ours() {
  local pid=$1 dir=$2
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "docker-registry serve $dir/config.yml"
}

start() {
  local dir=${1:-} auth="" port pid code i attempt
  [ -n "$dir" ] || die "usage: $prog start DIR [--htpasswd USER:PASS]"
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --htpasswd) [ $# -ge 2 ] || die "--htpasswd needs USER:PASS"; auth=$2; shift 2 ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  need docker-registry docker-registry
  need curl curl
  need python3 python3
  mkdir -p "$dir/storage"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/registry.pid" ] && is_ours "$(cat "$dir/registry.pid")" "$dir"; then
    die "a registry already runs for $dir (pid $(cat "$dir/registry.pid"))"
  fi

  local auth_yaml=""
  if [ -n "$auth" ]; then
    case $auth in *:*) ;; *) die "--htpasswd wants USER:PASS, got '$auth'" ;; esac
    make_htpasswd "${auth%%:*}" "${auth#*:}" "$dir/htpasswd"
    auth_yaml="auth:
  htpasswd:
    realm: peapod-test
    path: $dir/htpasswd"
  fi

  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: peapod-local-$port
$auth_yaml
EOF
    # Own session so a terminal's signals do not reach it; the pid is the
    # registry itself because setsid does not fork when not a group leader.
    setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/registry.pid"
    for i in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then
        break
      fi
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null) || code=000
      # 401 is the answer of a registry with auth.
      if [ "$code" = 200 ] || [ "$code" = 401 ]; then
        echo "127.0.0.1:$port" >"$dir/address"
        echo "127.0.0.1:$port"
        return 0
      fi
      sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$dir/registry.pid"
      die "registry did not answer GET /v2/ on 127.0.0.1:$port in 5 s (log: $dir/registry.log)"
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$dir/registry.pid"
    # Most likely the port was taken between picking and binding: retry.
    grep -q 'address already in use' "$dir/registry.log" || break
  done
  echo "--- $dir/registry.log" >&2
  cat "$dir/registry.log" >&2 || true
  die "registry failed to start"
}

stop() {
  local dir=${1:-} pid i
  [ -n "$dir" ] || die "usage: $prog stop DIR"
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/registry.pid" ] || return 0
  pid=$(cat "$dir/registry.pid")
  if is_ours "$pid" "$dir"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      is_ours "$pid" "$dir" || break
      sleep 0.1
    done
    if is_ours "$pid" "$dir"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/registry.pid" "$dir/address"
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: $prog start DIR [--htpasswd USER:PASS] | stop DIR" ;;
esac
