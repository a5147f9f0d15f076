#!/usr/bin/env bash
# The first command on a fresh Debian 12 machine with Rust, as root: installs
# what the build and the daemon need, builds the release binaries and runs
# `peapod serve` in the foreground, ready for crictl and kubelet on
# /run/peapod/peapod.sock. A second run installs and builds nothing new and
# starts in seconds.
#
#   bash hack/run.sh                    the embedded defaults
#   bash hack/run.sh --config FILE      any `peapod serve` option
set -euo pipefail
cd "$(dirname "$0")/.."

bash hack/install-deps.sh --run >&2
cargo build --release --locked -p peapod -p peapod-monitor --bins >&2
exec "${CARGO_TARGET_DIR:-target}/release/peapod" serve "$@"
