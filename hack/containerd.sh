#!/usr/bin/env bash
# A private containerd (Debian's, with its CRI plugin) for side-by-side runs.
#
#   hack/containerd.sh start DIR REGISTRY     prints the CRI endpoint
#   hack/containerd.sh stop DIR [--cgroup-parent PATH]
#
# Everything it owns lives under DIR: config.toml, root/, state/ (runc state
# and pod netns files included), containerd.sock(+.ttrpc), net.d/ (CNI
# configs), containerd.log, containerd.pid. It never touches the system's
# /run/containerd socket or /var/lib/containerd, so it can run next to a
# system containerd. Only the shim sockets go to /run/containerd/s/ (a path
# containerd 1.6 hard-codes; their names hash our socket's address).
set -euo pipefail

prog=hack/containerd.sh
die() { echo "$prog: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package '$2' (hack/install-deps.sh)"
}

# True when PID is the containerd started with DIR's config (pid reuse guard).
is_ours() {
  local pid=$1 dir=$2
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "containerd --config $dir/config.toml"
}

# True when PID is a shim serving DIR's containerd.
is_our_shim() {
  local pid=$1 dir=$2
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE -- "containerd-shim.* -address $dir/containerd.sock( |\$)"
}

write_config() {
  local dir=$1 registry=$2
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
temp = "$dir/tmp"
oom_score = 0

[grpc]
  address = "$dir/containerd.sock"

# Explicit, so it cannot collide with another containerd's ttrpc socket.
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

# Empty addresses: no debug or metrics listeners.
[debug]
  address = ""
  level = "${CONTAINERD_LOG_LEVEL:-warn}"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$dir/opt"

  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "$dir/state/runc-v1"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$registry/pause:3.9"
    restrict_oom_score_adj = true
    systemd_cgroup = false
    disable_apparmor = true
    # Pod netns files under DIR, so stop can find and unmount leftovers.
    netns_mounts_under_state_dir = true
    # Port 0: the kernel picks, nothing clashes with another CRI runtime.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    disable_tcp_service = true

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$dir/net.d"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "$(command -v runc)"
          # runc's state under DIR instead of /run/containerd/runc.
          Root = "$dir/state/runc"

    # One hosts.toml per registry (the older "mirrors" table is deprecated).
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$dir/certs.d"
EOF
  mkdir -p "$dir/certs.d/$registry"
  cat >"$dir/certs.d/$registry/hosts.toml" <<EOF
# The test registry speaks plain HTTP on loopback.
server = "http://$registry"

[host."http://$registry"]
  capabilities = ["pull", "resolve"]
EOF
}

start() {
  local dir=${1:-} registry=${2:-} pid i
  [ -n "$dir" ] && [ -n "$registry" ] || die "usage: $prog start DIR REGISTRY"
  need containerd containerd
  need ctr containerd
  need containerd-shim-runc-v2 containerd
  need runc runc
  [ -x /usr/lib/cni/bridge ] || die "/usr/lib/cni/bridge not found: install the Debian package containernetworking-plugins"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/containerd.pid" ] && is_ours "$(cat "$dir/containerd.pid")" "$dir"; then
    die "a containerd already runs for $dir (pid $(cat "$dir/containerd.pid"))"
  fi
  mkdir -p "$dir/root" "$dir/state" "$dir/tmp" "$dir/opt" "$dir/net.d"
  write_config "$dir" "$registry"
  rm -f "$dir/containerd.sock" "$dir/containerd.sock.ttrpc"

  # Own session; setsid does not fork here, so $! is containerd itself.
  setsid containerd --config "$dir/config.toml" >>"$dir/containerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/containerd.pid"

  # Serving gRPC means every plugin has been initialised; then check CRI.
  for i in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    if [ -S "$dir/containerd.sock" ] && ctr --address "$dir/containerd.sock" version >/dev/null 2>&1; then
      if ctr --address "$dir/containerd.sock" plugins ls 2>/dev/null \
        | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" { print $NF }' | grep -qx ok; then
        echo "unix://$dir/containerd.sock"
        return 0
      fi
      echo "--- $dir/containerd.log" >&2
      tail -n 30 "$dir/containerd.log" >&2 || true
      stop "$dir"
      die "containerd started but its CRI plugin did not load"
    fi
    sleep 0.05
  done
  echo "--- $dir/containerd.log" >&2
  tail -n 30 "$dir/containerd.log" >&2 || true
  stop "$dir"
  die "containerd did not serve $dir/containerd.sock within 10 s"
}

# Pids holding the listening unix socket PATH (matched by socket inode).
socket_owners() {
  local path=$1 inode
  inode=$(awk -v p="$path" '$8 == p && $4 == "00010000" { print $7; exit }' /proc/net/unix)
  [ -n "$inode" ] || return 0
  find /proc/[0-9]*/fd -lname "socket:\[$inode\]" -printf '%h\n' 2>/dev/null \
    | awk -F/ '{ print $3 }' | sort -u
}

# Kills PID (after checking it with the predicate) and waits for it to go.
kill_wait() {
  local pid=$1 check=$2 dir=$3 sig=${4:-TERM} i
  "$check" "$pid" "$dir" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    "$check" "$pid" "$dir" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 20); do
    "$check" "$pid" "$dir" || return 0
    sleep 0.1
  done
  echo "$prog: pid $pid did not exit" >&2
}

stop() {
  local dir=${1:-} cgparent="" pid
  [ -n "$dir" ] || die "usage: $prog stop DIR [--cgroup-parent PATH]"
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --cgroup-parent) [ $# -ge 2 ] || die "--cgroup-parent needs a path"; cgparent=$2; shift 2 ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)

  if [ -f "$dir/containerd.pid" ]; then
    kill_wait "$(cat "$dir/containerd.pid")" is_ours "$dir" TERM
    rm -f "$dir/containerd.pid"
  fi

  # Containers and shims outlive containerd by design: remove what is left,
  # found through the task bundles in our state dir.
  local tasks="$dir/state/io.containerd.runtime.v2.task" b ns id shim addr
  if [ -d "$tasks" ]; then
    for b in "$tasks"/*/*/; do
      [ -d "$b" ] || continue
      b=${b%/}
      id=$(basename "$b")
      ns=$(basename "$(dirname "$b")")
      # runc kills the container's processes and removes its cgroups.
      if [ -d "$dir/state/runc/$ns/$id" ]; then
        runc --root "$dir/state/runc/$ns" delete --force "$id" >/dev/null 2>&1 || true
      fi
      # The bundle records the shim's socket; its listener is the shim.
      if [ -f "$b/address" ]; then
        addr=$(cat "$b/address")
        addr=${addr#unix://}
        for shim in $(socket_owners "$addr"); do
          kill_wait "$shim" is_our_shim "$dir" KILL
        done
        case $addr in /run/containerd/s/*) rm -f "$addr" ;; esac
      fi
    done
  fi
  # Safety net for a shim whose bundle was already gone.
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    if is_our_shim "$pid" "$dir"; then
      kill_wait "$pid" is_our_shim "$dir" KILL
    fi
  done

  # Mounts under DIR (rootfs overlays, shm, netns files), deepest first.
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "$prog: could not unmount $m" >&2
  done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)

  if [ -n "$cgparent" ]; then
    remove_cgroups "$cgparent"
  fi
  rm -f "$dir/containerd.sock" "$dir/containerd.sock.ttrpc"
}

# Removes the (empty) cgroup tree PATH in every hierarchy, leaves first.
remove_cgroups() {
  local parent=/${1#/} h d
  case $parent in /|/..*|*/../*) die "refusing cgroup parent '$1'" ;; esac
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    h=${h%/}
    [ -f "$h/cgroup.procs" ] || continue
    [ -d "$h$parent" ] || continue
    while read -r d; do
      rmdir "$d" 2>/dev/null || echo "$prog: cgroup $d not removed (still has processes?)" >&2
    done < <(find "$h$parent" -depth -type d)
  done
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: $prog start DIR REGISTRY | stop DIR [--cgroup-parent PATH]" ;;
esac
