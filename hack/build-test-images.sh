#!/usr/bin/env bash
# Builds the test images from Debian's busybox-static and pushes them to a
# plain-HTTP registry:
#
#   hack/build-test-images.sh REGISTRY [NAME...]     (default: IMAGES below)
#
# NAME is an image name from IMAGES or ON_DEMAND below (a ":tag" suffix is
# ignored). ON_DEMAND images (the ~100 MB `big` of the pull benchmark) are
# built only when named, so the tests' default run stays fast.
# Set REGISTRY_CREDS=USER:PASS for a registry started with --htpasswd.
# Prints one line per image: REGISTRY/NAME:TAG and the digest the registry
# serves for that tag (the manifest's, or the index's for multiarch).
#
# The OCI layout is written directly (umoci 0.4.7's `insert` truncates tar
# layers here). Layers are built with GNU tar with fixed owners, order and
# mtimes, so a rebuild gives the same digests and a re-push changes nothing.
# busybox-user, busybox-username, busybox-config and layers need root
# (chown, mknod).
#
# To add an image: write `image_NAME` that sets IMG_TAG, fills one or more
# layers (`busybox_layer`, or `new_layer` and then populate "$LAYER",
# optionally with `layer_opt`) and sets the config variables, then add NAME
# to IMAGES. An image with several platforms (pushed as an OCI index) calls
# `emit_manifest` after each platform but the last.
set -euo pipefail

prog=hack/build-test-images.sh
die() { echo "$prog: $*" >&2; exit 1; }

IMAGES=(pause busybox busybox-user busybox-username busybox-config layers multiarch busybox-docker)
ON_DEMAND=(big)

BUSYBOX=/bin/busybox
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOST_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)

# ---- per-image state, reset by reset_image ---------------------------------
reset_image() {
  IMG_TAG=latest
  IMG_FORMAT=oci             # or v2s2: skopeo converts on push
  MANIFESTS=()               # descriptors (JSON) written by emit_manifest
  declare -gA LAYER_OPT=()   # "LAYERDIR|KEY" -> value, see layer_opt
  reset_manifest
}

# State of one platform's manifest; emit_manifest resets it.
reset_manifest() {
  IMG_ARCH=$HOST_ARCH
  IMG_VARIANT=""
  IMG_ENTRYPOINT=null        # JSON array or null
  IMG_CMD=null               # JSON array or null
  IMG_ENV="[\"PATH=$DEFAULT_PATH\"]"
  IMG_WORKDIR=""
  IMG_USER=""
  IMG_LABELS="{}"            # JSON object
  IMG_STOPSIGNAL=""
  IMG_VOLUMES="{}"           # JSON object
  LAYERS=()
  LAYER=""
}

new_layer() {
  LAYER="$WORK/$IMG_NAME/m${#MANIFESTS[@]}-layer${#LAYERS[@]}"
  rm -rf "$LAYER"
  mkdir -p "$LAYER"
  LAYERS+=("$LAYER")
}

# Options of the current layer (defaults in brackets):
#   owners keep|root     keep the staging tree's numeric owners [all 0:0]
#   mtime SECONDS        mtime of every entry [0]
#   xattrs PATTERN       archive xattrs matching PATTERN (pax format) [none]
#   compress gzip|zstd   [gzip]
#   first PATH, before PATH
#                        archive PATH just before the entry PATH (tar
#                        stores the first name of a hard-linked inode as
#                        the file and later names as links to it)
layer_opt() {
  case $1 in
    owners|mtime|xattrs|compress|first|before) ;;
    *) die "layer_opt: unknown option '$1'" ;;
  esac
  if [ "$1" = compress ] && [ "$2" = zstd ]; then
    command -v zstd >/dev/null 2>&1 || die "'zstd' not found: install the Debian package zstd"
  fi
  LAYER_OPT["$LAYER|$1"]=$2
}

need_root() {
  [ "$(id -u)" = 0 ] || die "image $IMG_NAME needs root ($1)"
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

# A new layer that is exactly busybox_rootfs, the same blob in every image.
# Its tar is made once per run: creating the ~400 files is most of the time.
busybox_layer() {
  local tarf="$WORK/busybox-rootfs.tar"
  if [ ! -f "$tarf" ]; then
    busybox_rootfs "$WORK/busybox-rootfs"
    tar_layer "$WORK/busybox-rootfs" "$tarf"
  fi
  new_layer
  LAYER_OPT["$LAYER|tar"]=$tarf
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
  busybox_layer
  IMG_CMD='["sh"]'
}

# Layer 1 is busybox:latest's layer (same digest). Layer 2 replaces
#   /etc/passwd  root, nobody, app:x:1002:1003:app:/home/app:/bin/sh
#   /etc/group   root, nobody, app:x:1003:, extra:x:1004:app
# and adds /home/app (1002:1003, 0755). So uid 1002 resolves to user app,
# primary gid 1003, supplementary gid 1004. Cmd ["sh"].
app_user_layers() {
  need_root "chown of /home/app"
  busybox_layer
  new_layer
  layer_opt owners keep
  mkdir -p "$LAYER/etc" "$LAYER/home/app"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1002:1003:app:/home/app:/bin/sh\n' >"$LAYER/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\napp:x:1003:\nextra:x:1004:app\n' >"$LAYER/etc/group"
  chmod 0644 "$LAYER/etc/passwd" "$LAYER/etc/group"
  chown 1002:1003 "$LAYER/home/app"
  chmod 0755 "$LAYER/home/app"
  IMG_CMD='["sh"]'
}

# User "1002": a bare uid; the gids come from the image's /etc/group.
image_busybox-user() {
  app_user_layers
  IMG_USER=1002
}

# User "app": a name that only the image's /etc/passwd resolves.
image_busybox-username() {
  app_user_layers
  IMG_USER=app
}

# Every runtime-relevant config field set. Layer 1 is busybox:latest's;
# layer 2 adds /work (1002:1003, 0750). /data, the volume, is not in the
# rootfs. `sh -c "echo hello from config"` prints "hello from config".
image_busybox-config() {
  need_root "chown of /work"
  busybox_layer
  new_layer
  layer_opt owners keep
  mkdir "$LAYER/work"
  chown 1002:1003 "$LAYER/work"
  chmod 0750 "$LAYER/work"
  IMG_ENTRYPOINT='["/bin/sh","-c"]'
  IMG_CMD='["echo hello from config"]'
  IMG_ENV="[\"PATH=$DEFAULT_PATH\",\"GREETING=hi\",\"EMPTY=\"]"
  IMG_WORKDIR=/work
  IMG_STOPSIGNAL=SIGINT
  IMG_VOLUMES='{"/data":{}}'
  IMG_LABELS='{"org.example.purpose":"peapod-tests"}'
}

# Layer-application cases, Cmd ["sh"]:
# 1 (gzip) busybox:latest's layer.
# 2 (gzip, pax format, every entry mtime 1700000000 = 2023-11-14T22:13:20Z):
#   /a/keep.txt "keep\n" 0644, then /a/hard.txt a tar hard link to
#   a/keep.txt; /a/gone.txt "gone\n"; /dir/old/file1 "file1\n";
#   /dir/old/sub/file2 "file2\n"; /link symlink -> /a/keep.txt;
#   /bin/suid-test 4755 0:0 (a shell script); /owned.txt "owned\n" 0640
#   1002:1003; /fifo FIFO 0644; /dev-null-copy char device 1,3 0666;
#   /xattr.txt "xattr\n" with xattr user.peapod="peapod-test".
#   Everything not named is 0:0, files 0644, directories 0755.
# 3 (gzip) whiteout /a/.wh.gone.txt (removes /a/gone.txt), opaque marker
#   /dir/old/.wh..wh..opq and /dir/old/new.txt "new\n": afterwards
#   /dir/old holds only new.txt. It re-declares /a, /dir, /dir/old
#   (0755, 0:0, mtime 0).
# 4 (zstd, application/vnd.oci.image.layer.v1.tar+zstd) /zstd.txt "zstd\n".
image_layers() {
  need_root "mknod, chown"
  command -v python3 >/dev/null 2>&1 || die "'python3' not found (sets the test xattr): install python3"
  busybox_layer
  IMG_CMD='["sh"]'

  new_layer
  layer_opt owners keep
  layer_opt mtime 1700000000
  layer_opt xattrs 'user.*'
  layer_opt first a/keep.txt
  layer_opt before a/hard.txt
  mkdir -p "$LAYER"/{a,bin,dir/old/sub}
  echo keep >"$LAYER/a/keep.txt"
  ln "$LAYER/a/keep.txt" "$LAYER/a/hard.txt"
  echo gone >"$LAYER/a/gone.txt"
  echo file1 >"$LAYER/dir/old/file1"
  echo file2 >"$LAYER/dir/old/sub/file2"
  ln -s /a/keep.txt "$LAYER/link"
  printf '#!/bin/sh\necho suid-test\n' >"$LAYER/bin/suid-test"
  chmod 4755 "$LAYER/bin/suid-test"
  echo owned >"$LAYER/owned.txt"
  chown 1002:1003 "$LAYER/owned.txt"
  chmod 0640 "$LAYER/owned.txt"
  mkfifo -m 0644 "$LAYER/fifo"
  mknod -m 0666 "$LAYER/dev-null-copy" c 1 3
  echo xattr >"$LAYER/xattr.txt"
  python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.peapod", b"peapod-test")' \
    "$LAYER/xattr.txt" || die "cannot set a user.* xattr under $WORK (set TMPDIR to a filesystem with user xattrs)"

  new_layer
  mkdir -p "$LAYER/a" "$LAYER/dir/old"
  : >"$LAYER/a/.wh.gone.txt"
  : >"$LAYER/dir/old/.wh..wh..opq"
  echo new >"$LAYER/dir/old/new.txt"

  new_layer
  layer_opt compress zstd
  echo zstd >"$LAYER/zstd.txt"
}

# An OCI index for platform selection. Entry 1: a fake linux/arm64/v8 image
# (one layer: /ARCH "arm64\n"; config architecture arm64, variant v8), first
# so that taking manifests[0] picks the wrong one. Entry 2: the host's
# platform (linux/amd64 here): busybox:latest's layer plus /ARCH "amd64\n",
# Cmd ["sh"]. On an arm64 host the fake entry is linux/amd64 instead.
image_multiarch() {
  local other=arm64 other_variant=v8
  if [ "$HOST_ARCH" = arm64 ]; then
    other=amd64 other_variant=""
  fi
  IMG_ARCH=$other
  IMG_VARIANT=$other_variant
  new_layer
  printf '%s\n' "$other" >"$LAYER/ARCH"
  emit_manifest

  busybox_layer
  new_layer
  printf '%s\n' "$HOST_ARCH" >"$LAYER/ARCH"
  IMG_CMD='["sh"]'
}

# busybox:latest as a Docker v2 schema 2 image: manifest
# application/vnd.docker.distribution.manifest.v2+json, config
# application/vnd.docker.container.image.v1+json, layer
# application/vnd.docker.image.rootfs.diff.tar.gzip (same layer blob).
image_busybox-docker() {
  image_busybox
  IMG_FORMAT=v2s2
}

# A new layer holding every file and symlink that the installed Debian
# packages PKG... own (`dpkg -L`), at their paths. Parent directories are
# created 0755; tar_layer fixes owners and mtimes, so the layer's digest
# depends only on the package versions.
package_layer() {
  local p list f dir
  local -A real=()
  new_layer
  list="$LAYER.files"
  : >"$list"
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
      || die "image $IMG_NAME: Debian package '$p' is not installed (hack/install-deps.sh installs it)"
    # Lines not starting with "/" are dpkg's diversion notes. Directories
    # (also symlinked ones such as merged-/usr's /lib) would pull in other
    # packages' files; a file's directory is resolved (/lib/systemd ->
    # /usr/lib/systemd) so no entry passes through a symlink.
    while IFS= read -r f; do
      case $f in /*) ;; *) continue ;; esac
      [ ! -d "$f" ] || continue
      [ -L "$f" ] || [ -f "$f" ] || continue
      dir=${f%/*}
      [ -n "${real[$dir]+set}" ] || real[$dir]=$(cd "$dir/" && pwd -P)
      printf '%s/%s\n' "${real[$dir]#/}" "${f##*/}"
    done < <(dpkg -L "$p") >>"$list"
  done
  LC_ALL=C sort -u -o "$list" "$list"
  tar -C / --no-recursion --verbatim-files-from -T "$list" -cf - | tar -C "$LAYER" -xf - \
    || die "image $IMG_NAME: copying the files of $* failed"
  rm -f "$list"
}

# The pull benchmark's image: ~100 MB of gzip layers (measured on Debian 12
# amd64: about 100 MB compressed, 290 MB uncompressed), content of mixed
# compressibility from packages hack/install-deps.sh installs:
# 1 busybox:latest's layer, so the image runs (Cmd ["sh"]).
# 2 containerd, runc, crun: static Go and C binaries.
# 3 containernetworking-plugins, docker-registry: more Go binaries.
# 4 cpp-12, libgcc-12-dev: compiler binaries, static archives, objects.
# 5 cmake, cmake-data: a C++ binary and ~3000 small text modules.
# 6 libstdc++-12-dev: ~800 C++ headers, highly compressible text.
# Every layer also holds its packages' gzipped changelogs and man pages.
image_big() {
  busybox_layer
  package_layer containerd runc crun
  package_layer containernetworking-plugins docker-registry
  package_layer cpp-12 libgcc-12-dev
  package_layer cmake cmake-data
  package_layer libstdc++-12-dev
  IMG_CMD='["sh"]'
}

# ---- OCI layout ------------------------------------------------------------

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Prints a JSON array of the JSON values given as arguments.
json_array() { local IFS=,; echo "[$*]"; }

# Moves FILE into the layout's blob store; prints its digest hex.
add_blob() {
  local file=$1 hex
  hex=$(sha256_of "$file")
  mv -f "$file" "$OCI/blobs/sha256/$hex"
  echo "$hex"
}

# Archives layer dir $1 into the tar file $2 with the layer's options.
tar_layer() {
  local l=$1 tarf=$2 entries
  local opts=(--numeric-owner "--mtime=@${LAYER_OPT[$l|mtime]:-0}")
  if [ "${LAYER_OPT[$l|owners]:-root}" != keep ]; then
    opts+=(--owner=0 --group=0)
  fi
  if [ -n "${LAYER_OPT[$l|xattrs]:-}" ]; then
    # GNU tar stores xattrs only in pax headers; its default pax records
    # include atime and ctime, which would change the digest on every build.
    opts+=(--format=posix --xattrs "--xattrs-include=${LAYER_OPT[$l|xattrs]}"
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
  else
    opts+=(--format=gnu)
  fi
  # Entries without a leading "./", like registry images have.
  mapfile -t entries < <(cd "$l" && LC_ALL=C ls -A)
  if [ -n "${LAYER_OPT[$l|first]:-}" ]; then
    # The --sort=name order with one member moved; tar lists without
    # reading file data when the archive is /dev/null.
    tar -C "$l" --sort=name --quoting-style=literal -cvf /dev/null -- "${entries[@]}" |
      awk -v first="${LAYER_OPT[$l|first]}" -v before="${LAYER_OPT[$l|before]:-}" '
        $0 == first { next }
        $0 == before { print first }
        { print }' >"$tarf.members"
    grep -qxF -- "${LAYER_OPT[$l|first]}" "$tarf.members" \
      || die "layer $l: layer_opt before '${LAYER_OPT[$l|before]:-}' names no entry"
    tar -C "$l" "${opts[@]}" --no-recursion --verbatim-files-from \
      -T "$tarf.members" -cf "$tarf"
    rm -f "$tarf.members"
  else
    tar -C "$l" --sort=name "${opts[@]}" -cf "$tarf" -- "${entries[@]}"
  fi
}

# Archives and compresses layer dir $1 into the blob store; sets LAYER_DIFF
# (sha256 hex of the tar) and LAYER_DESC (its descriptor, JSON).
pack_layer() {
  local l=$1 tarf="$WORK/$IMG_NAME/layer.tar" out mt hex size
  local comp=${LAYER_OPT[$l|compress]:-gzip}
  if [ -n "${LAYER_OPT[$l|tar]:-}" ]; then
    [ -z "$(ls -A "$l")" ] || die "layer $l: files added to a busybox_layer"
    cp "${LAYER_OPT[$l|tar]}" "$tarf"
  else
    tar_layer "$l" "$tarf"
  fi
  LAYER_DIFF=$(sha256_of "$tarf")
  case $comp in
    gzip) mt=application/vnd.oci.image.layer.v1.tar+gzip ;;
    zstd) mt=application/vnd.oci.image.layer.v1.tar+zstd ;;
    *) die "layer $l: unknown compression '$comp'" ;;
  esac
  # Several images share the busybox layer: compress each tar once per run.
  out="$WORK/packed/$LAYER_DIFF.$comp"
  if [ ! -f "$out" ]; then
    mkdir -p "$WORK/packed"
    case $comp in
      gzip) gzip -n -6 -c "$tarf" >"$out.new" ;;
      zstd) zstd -q -3 -c "$tarf" >"$out.new" ;;
    esac
    mv "$out.new" "$out"
  fi
  rm -f "$tarf"
  cp "$out" "$tarf.packed"
  size=$(stat -c %s "$tarf.packed")
  hex=$(add_blob "$tarf.packed")
  # Same bytes as `jq -c` would print.
  LAYER_DESC=$(printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$mt" "$hex" "$size")
}

# Writes the current platform's layers, config and manifest into $OCI,
# appends the manifest's descriptor to MANIFESTS and resets the
# per-manifest state. (Few jq calls: each one costs ~40 ms here.)
emit_manifest() {
  [ ${#LAYERS[@]} -gt 0 ] || die "image $IMG_NAME: a manifest without layers"
  local diff_ids=() descs=() l
  for l in "${LAYERS[@]}"; do
    pack_layer "$l"
    diff_ids+=("\"sha256:$LAYER_DIFF\"")
    descs+=("$LAYER_DESC")
  done
  diff_ids=$(json_array "${diff_ids[@]}")
  descs=$(json_array "${descs[@]}")

  local cfg cfg_hex cfg_size man man_hex man_size
  cfg="$WORK/$IMG_NAME/config.json"
  # Key order is part of the digest: new keys go last, only when set.
  jq -cn --arg arch "$IMG_ARCH" --arg variant "$IMG_VARIANT" \
    --argjson ep "$IMG_ENTRYPOINT" --argjson cmd "$IMG_CMD" --argjson env "$IMG_ENV" \
    --arg wd "$IMG_WORKDIR" --arg user "$IMG_USER" --argjson labels "$IMG_LABELS" \
    --arg stop "$IMG_STOPSIGNAL" --argjson volumes "$IMG_VOLUMES" \
    --argjson diff_ids "$diff_ids" --arg n "$IMG_NAME" '
    {
      created: "1970-01-01T00:00:00Z",
      architecture: $arch,
      os: "linux"
    }
    + (if $variant != "" then {variant: $variant} else {} end)
    + {
      config: ({Env: $env}
        + (if $ep != null then {Entrypoint: $ep} else {} end)
        + (if $cmd != null then {Cmd: $cmd} else {} end)
        + (if $wd != "" then {WorkingDir: $wd} else {} end)
        + (if $user != "" then {User: $user} else {} end)
        + (if $labels != {} then {Labels: $labels} else {} end)
        + (if $stop != "" then {StopSignal: $stop} else {} end)
        + (if $volumes != {} then {Volumes: $volumes} else {} end)),
      rootfs: {type: "layers", diff_ids: $diff_ids},
      history: [$diff_ids[] | {created: "1970-01-01T00:00:00Z", created_by: ("hack/build-test-images.sh " + $n)}]
    }' >"$cfg"
  cfg_size=$(stat -c %s "$cfg")
  cfg_hex=$(add_blob "$cfg")

  man="$WORK/$IMG_NAME/manifest.json"
  jq -cn --arg c "sha256:$cfg_hex" --argjson cs "$cfg_size" --argjson layers "$descs" '
    {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
      layers: $layers
    }' >"$man"
  man_size=$(stat -c %s "$man")
  man_hex=$(add_blob "$man")

  local variant=""
  [ -z "$IMG_VARIANT" ] || variant=",\"variant\":\"$IMG_VARIANT\""
  MANIFESTS+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"%s}}' \
    "$man_hex" "$man_size" "$IMG_ARCH" "$variant")")
  reset_manifest
}

build_image() {
  IMG_NAME=$1
  reset_image
  declare -F "image_$IMG_NAME" >/dev/null || die "unknown image '$IMG_NAME' (known: ${IMAGES[*]} ${ON_DEMAND[*]})"
  OCI="$WORK/$IMG_NAME/oci"
  rm -rf "$OCI"
  mkdir -p "$OCI/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"

  "image_$IMG_NAME"
  [ ${#LAYERS[@]} -eq 0 ] || emit_manifest

  local copy_opts=(--quiet --dest-tls-verify=false --digestfile "$WORK/$IMG_NAME/digest")
  local manifests
  manifests=$(json_array "${MANIFESTS[@]}")
  if [ ${#MANIFESTS[@]} -eq 1 ]; then
    jq -c --arg tag "$IMG_TAG" '
      {schemaVersion: 2, manifests: [.[0] + {annotations: {"org.opencontainers.image.ref.name": $tag}}]}' \
      <<<"$manifests" >"$OCI/index.json"
  else
    local idx idx_hex idx_size
    idx="$WORK/$IMG_NAME/image-index.json"
    jq -c '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .}' \
      <<<"$manifests" >"$idx"
    idx_size=$(stat -c %s "$idx")
    idx_hex=$(add_blob "$idx")
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
      "$idx_hex" "$idx_size" "$IMG_TAG" >"$OCI/index.json"
    copy_opts+=(--multi-arch all)
  fi
  if [ "$IMG_FORMAT" = oci ]; then
    # Push the blobs written here byte for byte.
    copy_opts+=(--preserve-digests)
  else
    copy_opts+=(--format "$IMG_FORMAT")
  fi
  if [ -n "${REGISTRY_CREDS:-}" ]; then
    copy_opts+=(--dest-creds "$REGISTRY_CREDS")
  fi
  skopeo --insecure-policy copy "${copy_opts[@]}" \
    "oci:$OCI:$IMG_TAG" "docker://$REGISTRY/$IMG_NAME:$IMG_TAG" >/dev/null \
    || die "skopeo could not push $REGISTRY/$IMG_NAME:$IMG_TAG"
  echo "$REGISTRY/$IMG_NAME:$IMG_TAG $(cat "$WORK/$IMG_NAME/digest")"
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
  # Modes of the staging trees end up in the layers.
  umask 022
  WORK=$(mktemp -d /tmp/peapod-images.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  for n in "${names[@]}"; do
    build_image "${n%%:*}"
  done
}

main "$@"
