#!/usr/bin/env bash
# lazyfs materialize against the way people get an ext4 from an image today, on the same image
# pulled from the same local registry (Debian's docker-registry on 127.0.0.1), in one run:
#   pipeline  skopeo copy + umoci unpack --rootless + mkfs.ext4 -d + an ownership fix-up pass
#             (debugfs set_inode_field uid/gid for every entry, from the layers' tar headers,
#             which is what an unprivileged pipeline must do to restore owners)
#   floor     gzip -dc of every layer to /dev/null, one after the other (decompression alone)
# lazyfs runs from an empty store (it fetches, indexes, writes), with and without its dm-verity
# tree, and once more from a store that has the image indexed but none of its content (what a
# materialize after `lazyfs mount` costs). Prints times, both ratios and the image sizes.
#
# The tree is materialized twice: as one layer, and split into three layers (layers are
# fetched, indexed and read in parallel, so a many-layer image is not slower).
#
#   bash bench/materialize.sh [PATH...]   (as root, after packaging/setup.sh)
# PATHs (relative to /) make the root tree; the default is a Debian-minbase-like tree of this
# machine: etc, usr/sbin, var/lib/dpkg, usr/share/zoneinfo, usr/share/perl5, usr/lib/python3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${LAZYFS_BUILD:-$PWD/build}
lazyfs=${LAZYFS_BIN:-$build/cli/lazyfs}
push=$build/tests/support/lazyfs-push
work=$(mktemp -d /tmp/lazyfs-bench-mat.XXXXXX)
. bench/lib.sh
trap 'stop_registry; rm -rf "$work"' EXIT
[ $# -gt 0 ] || set -- etc usr/sbin var/lib/dpkg usr/share/zoneinfo usr/share/perl5 usr/lib/python3.11
paths=("$@")
start_registry

alloc() { echo $(( $(stat -c %b "$1") * 512 )); }

# run_case NAME TAR_ARGS...: one image (layers split by ---), every measure, one table.
run_case() {
  local name=$1
  shift
  local c=$work/$name
  mkdir -p "$c"
  make_layout "$c/layout" root "$@"
  "$push" "$c/layout" root "$registry" "bench/$name:1" > /dev/null
  local ref=docker://$registry/bench/$name:1
  local blobs=()
  for d in "${layer_digests[@]}"; do blobs+=("$c/layout/blobs/sha256/$d"); done
  echo
  echo "== $name: $layer_entries entries, ${#layer_digests[@]} gzip layer(s), $(numfmt --to=iec "$layer_size") compressed"

  drop_caches; local t; t=$(now); gzip -dc "${blobs[@]}" > /dev/null; local t_floor; t_floor=$(elapsed "$t")

  drop_caches; t=$(now)
  "$lazyfs" materialize -q --verity none --store "$c/store1" "$ref" "$c/lazyfs.img"
  local t_lazy; t_lazy=$(elapsed "$t")
  drop_caches; t=$(now)
  "$lazyfs" materialize -q --store "$c/store2" "$ref" "$c/lazyfs-verity.img"
  local t_lazy_verity; t_lazy_verity=$(elapsed "$t")
  # Indexed (as a mount leaves it), no content cached: layers are read whole, in parallel.
  "$lazyfs" ls -q --store "$c/store3" "$ref" / > /dev/null
  drop_caches; t=$(now)
  "$lazyfs" materialize -q --verity none --store "$c/store3" "$ref" "$c/lazyfs-indexed.img"
  local t_lazy_indexed; t_lazy_indexed=$(elapsed "$t")
  cmp "$c/lazyfs.img" "$c/lazyfs-indexed.img"

  drop_caches; t=$(now)
  skopeo copy -q --src-tls-verify=false "$ref" "oci:$c/copy:root"
  umoci unpack --rootless --image "$c/copy:root" "$c/bundle" > /dev/null
  truncate -s "$(stat -c %s "$c/lazyfs.img")" "$c/pipeline.img"
  mkfs.ext4 -q -F -d "$c/bundle/rootfs" "$c/pipeline.img"
  # The fix-up: owners from the tar headers, one debugfs session for all of them.
  python3 - "$c/copy" > "$c/fixup.cmds" <<'PY'
import json, os, sys, tarfile
layout = sys.argv[1]
index = json.load(open(os.path.join(layout, "index.json")))
def blob(d): return os.path.join(layout, "blobs", *d.split(":"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:*") as t:
        for m in t:
            path = "/" + m.name.lstrip("./").rstrip("/")
            if path == "/": continue
            print(f'sif "{path}" uid {m.uid}\nsif "{path}" gid {m.gid}')
PY
  debugfs -w -f "$c/fixup.cmds" "$c/pipeline.img" > /dev/null 2>&1
  sync
  local t_pipe; t_pipe=$(elapsed "$t")

  printf '%-40s %9s  %s\n' what time "ratio to lazyfs"
  printf '%-40s %8.2fs\n' "lazyfs materialize (empty store)" "$t_lazy"
  printf '%-40s %8.2fs  %s\n' "lazyfs materialize (+ dm-verity)" "$t_lazy_verity" "$(ratio "$t_lazy_verity" "$t_lazy")"
  printf '%-40s %8.2fs  %s\n' "lazyfs materialize (indexed, no content)" "$t_lazy_indexed" "$(ratio "$t_lazy_indexed" "$t_lazy")"
  printf '%-40s %8.2fs  %s  (lazyfs is %sx faster)\n' "skopeo+umoci+mkfs.ext4 -d+fix-up" "$t_pipe" "$(ratio "$t_pipe" "$t_lazy")" "$(ratio "$t_pipe" "$t_lazy")"
  printf '%-40s %8.2fs  %s  (lazyfs takes %sx the floor)\n' "gzip -dc of the layers (floor)" "$t_floor" "$(ratio "$t_floor" "$t_lazy")" "$(ratio "$t_lazy" "$t_floor")"
  printf 'image sizes (apparent / allocated): lazyfs %s / %s, pipeline %s / %s\n' \
    "$(numfmt --to=iec "$(stat -c %s "$c/lazyfs.img")")" "$(numfmt --to=iec "$(alloc "$c/lazyfs.img")")" \
    "$(numfmt --to=iec "$(stat -c %s "$c/pipeline.img")")" "$(numfmt --to=iec "$(alloc "$c/pipeline.img")")"
  rm -rf "$c"
}

run_case one-layer -C / "${paths[@]}"
# The same tree in three layers of about equal size: the paths dealt round-robin.
split=(-C /)
for i in 0 1 2; do
  [ "$i" -gt 0 ] && split+=(--- -C /)
  for ((j = i; j < ${#paths[@]}; j += 3)); do split+=("${paths[j]}"); done
done
run_case three-layers "${split[@]}"
