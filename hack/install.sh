#!/usr/bin/env bash
# Installs peapod as a node's runtime (optional; hack/run.sh runs it from the
# checkout instead), as root:
#   /usr/local/bin/peapod, /usr/local/bin/peapod-monitor
#   /etc/peapod/config.toml     the documented defaults, only if absent
#   /etc/crictl.yaml            crictl pointed at peapod, only if absent
#   /etc/systemd/system/peapod.service
# What it writes is listed in /usr/local/share/peapod/installed, which
# hack/uninstall.sh reads to remove exactly that. PEAPOD_INSTALL_ROOT puts
# it all below another root (for tests and packaging).
set -euo pipefail
cd "$(dirname "$0")/.."

root="${PEAPOD_INSTALL_ROOT:-}"
manifest="$root/usr/local/share/peapod/installed"

bash hack/install-deps.sh --run >&2
cargo build --release --locked -p peapod -p peapod-monitor --bins >&2

mkdir -p "$(dirname "$manifest")"
touch "$manifest"

# Records a file as installed (path and checksum), once.
record() {
  local sum
  sum=$(sha256sum "$root$1" | cut -d' ' -f1)
  grep -v "^$1 " "$manifest" > "$manifest.tmp" || true
  echo "$1 $sum" >> "$manifest.tmp"
  mv "$manifest.tmp" "$manifest"
}

# Installs FILE at PATH with MODE, replacing what an earlier install put there.
put() {
  install -D -m "$3" "$1" "$root$2"
  record "$2"
}

# Writes stdin to PATH with MODE unless something is there already.
put_if_absent() {
  if [ -e "$root$1" ]; then
    echo "hack/install.sh: keeping the existing $1" >&2
    cat > /dev/null
    return
  fi
  mkdir -p "$(dirname "$root$1")"
  cat > "$root$1"
  chmod "$2" "$root$1"
  record "$1"
}

release="${CARGO_TARGET_DIR:-target}/release"
put "$release/peapod" /usr/local/bin/peapod 0755
put "$release/peapod-monitor" /usr/local/bin/peapod-monitor 0755
"$release/peapod" config default | put_if_absent /etc/peapod/config.toml 0644
put_if_absent /etc/crictl.yaml 0644 <<'YAML'
runtime-endpoint: unix:///run/peapod/peapod.sock
image-endpoint: unix:///run/peapod/peapod.sock
timeout: 30
YAML
put hack/peapod.service /etc/systemd/system/peapod.service 0644

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "hack/install.sh: installed; start it with: systemctl enable --now peapod" >&2
else
  echo "hack/install.sh: installed below ${root:-/}" >&2
fi
