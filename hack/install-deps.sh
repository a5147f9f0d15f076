#!/usr/bin/env bash
# Installs what peapod's build and tests need on a fresh Debian 12 machine.
# Safe to run more than once.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "hack/install-deps.sh: run as root (it uses apt-get)" >&2
  exit 1
fi

pkgs=(
  # build: protobuf-src compiles protoc from source
  cmake g++ make pkg-config
  # runtime and tests
  runc crun iproute2 iptables util-linux procps iputils-ping
  containernetworking-plugins
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
