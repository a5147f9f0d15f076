#!/usr/bin/env bash
# Builds the test images from Debian's busybox-static and pushes them to a
# plain-HTTP registry:
#
#   hack/build-test-images.sh REGISTRY [NAME...]     (default: all images)
#
# NAME is an image name from IMAGES below (a ":tag" suffix is ignored).
# Set REGISTRY_CREDS=USER:PASS for a registry started with --htpasswd.
#
# The OCI layout is written directly (umoci 0.4.7's `insert` truncates tar
# layers here). Layers are built with GNU tar with fixed owners, order and
# mtimes, so a rebuild gives the same digests and a re-push changes nothing.
#
# To add an image: write `image_NAME` that sets IMG_TAG, fills one or more
# layers (call `new_layer`, then populate "$LAYER") and sets the config
# variables, then add NAME to IMAGES.
set -euo pipefail

prog=hack/build-test-images.sh
die() { echo "$prog: $*" >&2; exit 1; }

IMAGES=(pause busybox)

BUSYBOX=/bin/busybox
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- per-image state, reset by reset_image ---------------------------------
reset_image() {
  IMG_TAG=latest
  IMG_ENTRYPOINT=null        # JSON array or null
  IMG_CMD=null               # JSON array or null
  IMG_ENV="[\"PATH=$DEFAULT_PATH\"]"
  IMG_WORKDIR=""
  IMG_USER=""
  IMG_LABELS="{}"            # JSON object
  LAYERS=()
  LAYER=""
}

new_layer() {
  LAYER="$WORK/$IMG_NAME/layer${#LAYERS[@]}"
  rm -rf "$LAYER"
  mkdir -p "$LAYER"
  LAYERS+=("$LAYER")
}

# A minimal root: busybox, its applets as symlinks, passwd/group, /tmp.
busybox_rootfs() {
  local root=$1 applet
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,proc,sys,dev,var/tmp,run}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 0700 "$root/root"
  cp "$BUSYBOX" "$root/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    case $applet in busybox|linuxrc) continue ;; esac
    ln -sf busybox "$root/bin/$applet"
  done
  # Shebangs and scripts expect these two where coreutils puts them.
  ln -sf ../../bin/busybox "$root/usr/bin/env"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
}

# ---- images ----------------------------------------------------------------

# containerd's sandbox_image. PID 1 with the default SIGTERM disposition
# ignores SIGTERM; runtimes stop sandboxes with SIGKILL, which it obeys.
image_pause() {
  IMG_TAG=3.9
  new_layer
  mkdir -p "$LAYER"/{bin,etc,proc,sys,dev}
  cp "$BUSYBOX" "$LAYER/bin/busybox"
  ln -sf busybox "$LAYER/bin/sleep"
  printf 'root:x:0:0:root:/:/bin/sleep\nnobody:x:65534:65534:nobody:/:/bin/sleep\n' >"$LAYER/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$LAYER/etc/group"
  IMG_ENTRYPOINT='["/bin/sleep","2147483647"]'
  IMG_ENV='["PATH=/bin"]'
}

image_busybox() {
  IMG_TAG=latest
  new_layer
  busybox_rootfs "$LAYER"
  IMG_CMD='["sh"]'
}

# ---- OCI layout ------------------------------------------------------------

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Moves FILE into the layout's blob store; prints its digest hex.
add_blob() {
  local file=$1 hex
  hex=$(sha256_of "$file")
  mv -f "$file" "$OCI/blobs/sha256/$hex"
  echo "$hex"
}

build_image() {
  IMG_NAME=$1
  reset_image
  declare -F "image_$IMG_NAME" >/dev/null || die "unknown image '$IMG_NAME' (known: ${IMAGES[*]})"
  "image_$IMG_NAME"

  OCI="$WORK/$IMG_NAME/oci"
  rm -rf "$OCI"
  mkdir -p "$OCI/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"

  local diff_ids="[]" layers_json="[]" history="[]" l tarf diff hex size entries
  for l in "${LAYERS[@]}"; do
    tarf="$WORK/$IMG_NAME/layer.tar"
    # Entries without a leading "./", like registry images have.
    mapfile -t entries < <(cd "$l" && ls -A)
    tar -C "$l" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
      --format=gnu -cf "$tarf" -- "${entries[@]}"
    diff=$(sha256_of "$tarf")
    gzip -n -6 -f "$tarf"
    size=$(stat -c %s "$tarf.gz")
    hex=$(add_blob "$tarf.gz")
    diff_ids=$(jq -c --arg d "sha256:$diff" '. + [$d]' <<<"$diff_ids")
    layers_json=$(jq -c --arg d "sha256:$hex" --argjson s "$size" \
      '. + [{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":$d,"size":$s}]' <<<"$layers_json")
    history=$(jq -c --arg n "$IMG_NAME" '. + [{"created":"1970-01-01T00:00:00Z","created_by":("hack/build-test-images.sh " + $n)}]' <<<"$history")
  done

  local arch cfg cfg_hex cfg_size man man_hex man_size
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  cfg="$WORK/$IMG_NAME/config.json"
  jq -cn --arg arch "$arch" \
    --argjson ep "$IMG_ENTRYPOINT" --argjson cmd "$IMG_CMD" --argjson env "$IMG_ENV" \
    --arg wd "$IMG_WORKDIR" --arg user "$IMG_USER" --argjson labels "$IMG_LABELS" \
    --argjson diff_ids "$diff_ids" --argjson history "$history" '
    {
      created: "1970-01-01T00:00:00Z",
      architecture: $arch,
      os: "linux",
      config: ({Env: $env}
        + (if $ep != null then {Entrypoint: $ep} else {} end)
        + (if $cmd != null then {Cmd: $cmd} else {} end)
        + (if $wd != "" then {WorkingDir: $wd} else {} end)
        + (if $user != "" then {User: $user} else {} end)
        + (if $labels != {} then {Labels: $labels} else {} end)),
      rootfs: {type: "layers", diff_ids: $diff_ids},
      history: $history
    }' >"$cfg"
  cfg_size=$(stat -c %s "$cfg")
  cfg_hex=$(add_blob "$cfg")

  man="$WORK/$IMG_NAME/manifest.json"
  jq -cn --arg c "sha256:$cfg_hex" --argjson cs "$cfg_size" --argjson layers "$layers_json" '
    {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
      layers: $layers
    }' >"$man"
  man_size=$(stat -c %s "$man")
  man_hex=$(add_blob "$man")

  jq -cn --arg m "sha256:$man_hex" --argjson ms "$man_size" --arg tag "$IMG_TAG" --arg arch "$arch" '
    {
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: $m, size: $ms,
        platform: {architecture: $arch, os: "linux"},
        annotations: {"org.opencontainers.image.ref.name": $tag}
      }]
    }' >"$OCI/index.json"

  local creds=()
  if [ -n "${REGISTRY_CREDS:-}" ]; then
    creds=(--dest-creds "$REGISTRY_CREDS")
  fi
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "${creds[@]}" \
    "oci:$OCI:$IMG_TAG" "docker://$REGISTRY/$IMG_NAME:$IMG_TAG" >/dev/null \
    || die "skopeo could not push $REGISTRY/$IMG_NAME:$IMG_TAG"
  echo "$REGISTRY/$IMG_NAME:$IMG_TAG sha256:$man_hex"
}

main() {
  [ $# -ge 1 ] || die "usage: $prog REGISTRY [NAME...]"
  REGISTRY=$1
  shift
  local c
  for c in jq skopeo tar gzip sha256sum; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found: run hack/install-deps.sh"
  done
  [ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install the Debian package busybox-static"

  local names=("$@") n
  [ ${#names[@]} -gt 0 ] || names=("${IMAGES[@]}")
  WORK=$(mktemp -d /tmp/peapod-images.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  for n in "${names[@]}"; do
    build_image "${n%%:*}"
  done
}

main "$@"
