#!/usr/bin/env bash
# Installs what peapod needs on a fresh Debian 12 machine. Safe to run more
# than once; what is installed already is not fetched again.
#
#   hack/install-deps.sh         the build, the daemon and the whole test suite
#   hack/install-deps.sh --run   the build and the daemon only (hack/run.sh)
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "hack/install-deps.sh: run as root (it uses apt-get)" >&2
  exit 1
fi

run_pkgs=(
  # build: protobuf-src compiles protoc from source
  cmake g++ make pkg-config
  # the daemon: an OCI runtime, CNI plugins (and what they call), mounts
  runc iproute2 iptables util-linux procps containernetworking-plugins
  ca-certificates
  # CheckpointContainer: runc dumps containers with CRIU (tests/checkpoint.rs
  # needs it too; the full install is these plus the test packages)
  criu
)

test_pkgs=(
  crun iputils-ping
  # service files are checked with systemd-analyze verify
  systemd
  # images and the peer runtime for benchmarks
  docker-registry skopeo umoci busybox-static containerd zstd
  jq curl ca-certificates
  # streaming tests: independent clients for the CRI streaming server
  # (hack/build-test-clients.sh): the Go SPDY client is built in GOPATH mode
  # on Debian's Go and moby/spdystream (the library kubelet/client-go use);
  # the WebSocket client runs the `kubernetes` package from PyPI in a venv
  # of Debian's python3
  golang-go golang-github-docker-spdystream-dev python3 python3-venv
)

case "${1:-}" in
  --run) pkgs=("${run_pkgs[@]}") ;;
  "") pkgs=("${run_pkgs[@]}" "${test_pkgs[@]}") ;;
  *)
    echo "usage: hack/install-deps.sh [--run]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's docker-registry and containerd packages start services where an
# init system runs them; peapod's scripts start their own instances with
# their own config, so stop the packaged ones if something started them.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry containerd >/dev/null 2>&1 || true
fi

echo "hack/install-deps.sh: all dependencies present"
