#!/usr/bin/env bash
# Removes what hack/install.sh installed, as its list says, and nothing else:
# a config file changed since it was installed is kept (and said so), as are
# peapod's data (/var/lib/peapod) and any running pods. PEAPOD_INSTALL_ROOT
# as for hack/install.sh.
set -euo pipefail

root="${PEAPOD_INSTALL_ROOT:-}"
manifest="$root/usr/local/share/peapod/installed"

if [ ! -f "$manifest" ]; then
  echo "hack/uninstall.sh: nothing installed ($manifest is missing)" >&2
  exit 0
fi

if [ -z "$root" ] && [ -d /run/systemd/system ] && systemctl is-enabled peapod >/dev/null 2>&1; then
  systemctl disable --now peapod
fi

while read -r path sum; do
  [ -e "$root$path" ] || continue
  if [ "$(sha256sum "$root$path" | cut -d' ' -f1)" != "$sum" ]; then
    echo "hack/uninstall.sh: keeping $path (changed since it was installed)" >&2
    continue
  fi
  rm -f "$root$path"
done < "$manifest"
rm -f "$manifest"
rmdir "$root/usr/local/share/peapod" "$root/etc/peapod" 2>/dev/null || true

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "hack/uninstall.sh: removed what hack/install.sh installed" >&2
