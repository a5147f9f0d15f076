#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine: installs what the tests
# need, builds, and runs unit and integration tests (as root: they create
# namespaces, mounts, cgroups and CNI networks).
set -euo pipefail
cd "$(dirname "$0")/.."

bash hack/install-deps.sh
# The independent exec/attach/port-forward clients the streaming tests drive
# (tests/clients/README.md), into target/test-clients.
bash hack/build-test-clients.sh
# The version tests/upgrade.rs takes over from (built once).
bash hack/build-previous.sh

# Integration tests start several daemons and pods at once; two test threads
# keep a 2-core machine responsive.
export RUST_BACKTRACE=1
# --workspace: the bench and the CRI client are packages of their own.
cargo build --workspace --all-targets --locked
cargo test --workspace --all-targets --locked -- --test-threads="${TEST_THREADS:-2}"
