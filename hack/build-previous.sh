#!/usr/bin/env bash
# Builds the previous version of peapod, the one this version must take
# over from (tests/upgrade.rs: pods and containers made by it, managed by
# this one after a restart), into target/previous/bin. Once: a second run
# with the same version does nothing.
#
# The version is the commit in hack/previous-version; its source comes
# from this clone's history (fetched from origin if the clone lacks it).
set -euo pipefail
prog=hack/build-previous.sh
die() { echo "$prog: $*" >&2; exit 1; }

cd "$(dirname "$0")/.."
rev=$(tr -d '[:space:]' < hack/previous-version)
out=target/previous
if [ -x "$out/bin/peapod" ] && [ -x "$out/bin/peapod-monitor" ] \
    && [ "$(cat "$out/rev" 2>/dev/null)" = "$rev" ]; then
  exit 0
fi

if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  git fetch --quiet origin "$rev" 2>/dev/null \
    || die "commit $rev (the previous version) is not in this clone and origin cannot give it: clone with full history"
fi

src=$(mktemp -d /tmp/peapod-previous.XXXXXX)
trap 'rm -rf "$src"' EXIT
git archive "$rev" | tar -x -C "$src"
echo "== building the previous version ($rev) for the upgrade test" >&2
CARGO_TARGET_DIR="$(pwd)/$out/target" cargo build --locked \
  --manifest-path "$src/Cargo.toml" --bin peapod --bin peapod-monitor
mkdir -p "$out/bin"
cp "$out/target/debug/peapod" "$out/target/debug/peapod-monitor" "$out/bin/"
echo "$rev" > "$out/rev"
