#!/usr/bin/env bash
# Side-by-side benchmark of peapod and Debian's containerd (CRI plugin), from
# a fresh machine (after hack/install-deps.sh), as root:
#
#   hack/bench.sh                        every workload (below)
#   hack/bench.sh --pull-only [OPTIONS]  only the image pull workload
#   hack/bench.sh --containers-only [OPTIONS]
#                                        only the container workload and the runc floor
#   hack/bench.sh --containers-only --userns [OPTIONS]
#                                        the same, plus the user namespace pass (below)
#   hack/bench.sh --streaming-only [OPTIONS]
#                                        only the streaming workload
#   hack/bench.sh [peapod-bench OPTIONS] e.g. hack/bench.sh --runs 20 --cni
#
# Builds release binaries, starts a private registry with the test images, a
# private containerd and a peapod daemon, each with its own CNI bridge, runs
# peapod-bench against both and prints the numbers. Everything it started is
# stopped by pid on exit, also on error or Ctrl-C.
#
# BENCH_TARGETS="peapod containerd" (default) picks the runtimes to measure.
# Without arguments the bench runs the host-network (--no-cni) and the
# pod-network (--cni) sandbox workloads, the container workload in both
# network modes, the streaming workload and the pull workload. The container
# workload: per run a pod with one container of the test image busybox:latest
# (pulled by CRI PullImage), CreateContainer + StartContainer, StopContainer
# (timeout 10 s) of a shell that exits on SIGTERM, RemoveContainer,
# StopPodSandbox, RemovePodSandbox; then the daemon's and the per-container processes'
# memory with 50 running containers; and, as the floor, `runc create` +
# `runc start` of a similar busybox bundle (target `runc`). With --userns
# the container workload adds a pod-network pass whose pods have user
# namespaces of their own, as kubelet 1.32 runs `hostUsers: false` (a
# 65536-id range per pod from host id 6553600 up), on each runtime whose
# Status reports user_namespaces for its default handler (Debian's
# containerd 1.6 does not: it is skipped with a line saying so); the
# userns rows carry each runtime's ratio to its plain pod-network row
# (e.g. peapod/plain). The pull
# workload: 5 cold pulls (RemoveImage before each) of the ~100 MB, 6-layer
# test image `big` by each runtime's CRI PullImage (containerd's unpacks into
# its snapshotter too) and by `skopeo copy` + `umoci unpack`, as MB/s and
# ratios. The streaming workload (pod network) reaches the URLs of CRI Exec
# and PortForward of both runtimes with the same SPDY client,
# target/test-clients/spdy-client (build it first: bash
# hack/build-test-clients.sh; the bench fails without it): 50 exec round
# trips of `echo hi` (from just before the Exec call to the client's first
# stdout byte, and to its exit; spawning the Go client is part of both, for
# both runtimes), 5 port-forward downloads and uploads of 256 MiB to busybox
# `nc` servers in the pod, as MB/s, and the daemon's memory (and that of the
# container's shim or monitor and the per-session processes) with 20 exec
# sessions open; ending them must leave no process behind.
# --pull-only, --containers-only and --streaming-only run just one of them;
# options after them go to peapod-bench (e.g. --pull-runs 10, --runs 100,
# --exec-sessions 50, --port-forward-mib 64).
# In OPTIONS, @REGISTRY@ stands for the registry's address, e.g.
#   hack/bench.sh --pull @REGISTRY@/busybox:latest --pull-runs 3
# (`big` is built only when the options name @REGISTRY@/big).
# The binaries are built into and run from $CARGO_TARGET_DIR when it is set
# (default target/).
set -euo pipefail

prog=hack/bench.sh
die() { echo "$prog: $*" >&2; exit 1; }

cd "$(dirname "$0")/.."
repo=$(pwd)
case ${CARGO_TARGET_DIR:-target} in
  /*) release=${CARGO_TARGET_DIR}/release ;;
  *) release=$repo/${CARGO_TARGET_DIR:-target}/release ;;
esac
targets=${BENCH_TARGETS:-peapod containerd}
cgparent=/peapod-bench

[ "$(id -u)" = 0 ] || die "run as root: the runtimes need it"
for c in cargo ip jq; do
  command -v "$c" >/dev/null 2>&1 || die "'$c' not found: run hack/install-deps.sh"
done

pull_workload=(--pull "@REGISTRY@/big:latest" --pull-peer skopeo+umoci)
container_workload=(--containers "@REGISTRY@/busybox:latest" --runc-floor)
streaming_workload=(--streaming "@REGISTRY@/busybox:latest")
if [ $# -eq 0 ]; then
  set -- --no-cni --cni "${container_workload[@]}" "${streaming_workload[@]}" "${pull_workload[@]}"
elif [ "$1" = --pull-only ]; then
  shift
  set -- "${pull_workload[@]}" "$@"
elif [ "$1" = --containers-only ]; then
  shift
  set -- --no-cni --cni --no-sandbox-workload "${container_workload[@]}" "$@"
elif [ "$1" = --streaming-only ]; then
  shift
  set -- --cni --no-sandbox-workload "${streaming_workload[@]}" "$@"
fi
# The streaming workload drives both runtimes with this client (peapod-bench's
# default --spdy-client, relative to the repo): fail now, not after the build.
if [[ " $* " == *" --streaming "* && " $* " != *" --spdy-client "* ]] \
  && ! [ -x target/test-clients/spdy-client ]; then
  die "target/test-clients/spdy-client not found: the streaming workload reaches both runtimes with it; build it with 'bash hack/build-test-clients.sh'"
fi

echo "== building release binaries" >&2
# The daemon and its monitor as `cargo build --release` builds them; the bench
# is a workspace member of its own (bench/), not a default one.
cargo build --release --bins
cargo build --release -p peapod-bench

work=$(mktemp -d /tmp/peapod-bench.XXXXXX)
# mktemp makes it 0700: a user-namespaced pod's root (a host id of its own,
# not host root) could not reach the root filesystem and bind sources that
# peapod keeps under it. Others may pass through, not list.
chmod 0711 "$work"
peapod_pid=""
bridges=()

cleanup() {
  local rc=$? i m b
  trap - EXIT INT TERM
  echo "== cleaning up $work" >&2
  if [ -n "$peapod_pid" ] && kill -0 "$peapod_pid" 2>/dev/null; then
    kill -TERM "$peapod_pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$peapod_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$peapod_pid" 2>/dev/null || true
  fi
  # spdy-client sessions of the streaming workload outlive a peapod-bench that
  # died hard; theirs are the ones with a --result file under $work.
  for i in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$i/cmdline" | grep -qF -- "--result $work/"; then
      echo "$prog: killing leftover spdy-client ${i#/proc/}" >&2
      kill -KILL "${i#/proc/}" 2>/dev/null || true
    fi
  done
  # Normally there is nothing left here: peapod-bench removes what it made
  # through the CRI and deletes its runc floor's containers itself. After a
  # bench that died hard: runc containers (peapod's and the floor's, found
  # through their runc roots in $work), then processes still in the bench's
  # cgroup tree (peapod's infra processes outlive the daemon by design).
  for r in "$work"/peapod/state/runtimes/*/ "$work"/peapod-bench-runc-*/root/; do
    [ -d "$r" ] || continue
    for i in $(runc --root "$r" list -q 2>/dev/null); do
      echo "$prog: deleting leftover runc container $i ($r)" >&2
      runc --root "$r" delete --force "$i" >/dev/null 2>&1 || true
    done
  done
  if [ -n "$peapod_pid" ]; then
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
      [ -d "${h%/}$cgparent" ] || continue
      for i in $(find "${h%/}$cgparent" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
        echo "$prog: killing leftover process $i in ${h%/}$cgparent" >&2
        kill -KILL "$i" 2>/dev/null || true
      done
    done
  fi
  hack/containerd.sh stop "$work/containerd" --cgroup-parent "$cgparent" || true
  hack/registry.sh stop "$work/registry" || true
  for b in "${bridges[@]}"; do
    if ip link show "$b" >/dev/null 2>&1; then
      ip link del "$b" || true
    fi
  done
  # peapod's leftovers (netns bind mounts), deepest first.
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  rm -rf "$work" || echo "$prog: could not remove $work" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A conflist: bridge + host-local + portmap + loopback. Addresses come from
# 198.18.0.0/15, the range set aside for benchmarks (RFC 2544); no traffic
# leaves the pods' own namespaces.
write_conflist() {
  local dir=$1 name=$2 bridge=$3 subnet=$4
  mkdir -p "$dir"
  jq -n --arg name "$name" --arg br "$bridge" --arg subnet "$subnet" --arg data "$work/ipam-$name" '
  {
    cniVersion: "1.0.0",
    name: $name,
    plugins: [
      {
        type: "bridge", bridge: $br, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [[{subnet: $subnet}]],
          routes: [{dst: "0.0.0.0/0"}],
          dataDir: $data
        }
      },
      {type: "portmap", capabilities: {portMappings: true}},
      {type: "loopback"}
    ]
  }' >"$dir/10-peapod-bench.conflist"
  bridges+=("$bridge")
}

echo "== registry and test images" >&2
registry=$(hack/registry.sh start "$work/registry")
hack/build-test-images.sh "$registry" >&2
if [[ " $* " == *" @REGISTRY@/big:"* ]]; then
  # ~30 s: not one of the default test images.
  hack/build-test-images.sh "$registry" big >&2
fi
args=()
for a in "$@"; do
  args+=("${a//@REGISTRY@/$registry}")
done

bench_args=()
for t in $targets; do
  case $t in
    containerd)
      echo "== containerd" >&2
      write_conflist "$work/containerd/net.d" peapod-bench-containerd pbench-ctrd0 198.18.1.0/24
      endpoint=$(hack/containerd.sh start "$work/containerd" "$registry")
      bench_args+=(--target "containerd=$endpoint" --pid-of "containerd=$(cat "$work/containerd/containerd.pid")"
        --store-of "containerd=$work/containerd/root")
      ;;
    peapod)
      echo "== peapod" >&2
      write_conflist "$work/peapod/peapod-net.d" peapod-bench-peapod pbench-peapod0 198.18.2.0/24
      setsid "$release/peapod" serve \
        --socket "$work/peapod/peapod.sock" \
        --root "$work/peapod/root" \
        --state "$work/peapod/state" \
        --cni-conf-dir "$work/peapod/peapod-net.d" \
        >"$work/peapod/peapod.log" 2>&1 </dev/null &
      peapod_pid=$!
      for i in $(seq 1 100); do
        [ -S "$work/peapod/peapod.sock" ] && break
        kill -0 "$peapod_pid" 2>/dev/null || break
        sleep 0.1
      done
      if ! [ -S "$work/peapod/peapod.sock" ]; then
        tail -n 20 "$work/peapod/peapod.log" >&2 || true
        die "peapod did not create $work/peapod/peapod.sock (log above); BENCH_TARGETS=containerd measures containerd alone"
      fi
      bench_args+=(--target "peapod=unix://$work/peapod/peapod.sock" --pid-of "peapod=$peapod_pid"
        --store-of "peapod=$work/peapod/root")
      ;;
    *) die "unknown target '$t' in BENCH_TARGETS (known: peapod containerd)" ;;
  esac
done

echo "== peapod-bench" >&2
"$release/peapod-bench" --cgroup-parent "$cgparent" --log-root "$work" "${bench_args[@]}" "${args[@]}"
