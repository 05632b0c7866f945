#!/usr/bin/env bash
# lazyfs materialize against the way people get an ext4 from an image today, on the same image
# pulled from the same local registry (Debian's docker-registry on 127.0.0.1), in one run:
#   pipeline  skopeo copy + umoci unpack --rootless + mkfs.ext4 -d + an ownership fix-up pass
#             (debugfs set_inode_field uid/gid for every entry, from the layer's tar headers,
#             which is what an unprivileged pipeline must do to restore owners)
#   floor     gzip -dc of the layer to /dev/null (decompression alone)
# lazyfs runs from an empty store (it fetches, indexes, writes), with and without its dm-verity
# tree. Prints times, both ratios and the image sizes.
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

make_layout "$work/layout" root -C / "$@"
start_registry
"$push" "$work/layout" root "$registry" bench/root:1 > /dev/null
ref=docker://$registry/bench/root:1
blob=$work/layout/blobs/sha256/$layer_digest
echo "image: $layer_entries entries, one gzip layer of $(numfmt --to=iec "$layer_size")"

drop_caches; t=$(now); gzip -dc "$blob" > /dev/null; t_floor=$(elapsed "$t")

drop_caches; t=$(now)
"$lazyfs" materialize -q --verity none --store "$work/store1" "$ref" "$work/lazyfs.img"
t_lazy=$(elapsed "$t")
drop_caches; t=$(now)
"$lazyfs" materialize -q --store "$work/store2" "$ref" "$work/lazyfs-verity.img"
t_lazy_verity=$(elapsed "$t")

drop_caches; t=$(now)
skopeo copy -q --src-tls-verify=false "docker://$registry/bench/root:1" "oci:$work/copy:root"
umoci unpack --rootless --image "$work/copy:root" "$work/bundle" > /dev/null
size=$(stat -c %s "$work/lazyfs.img")
truncate -s "$size" "$work/pipeline.img"
mkfs.ext4 -q -F -d "$work/bundle/rootfs" "$work/pipeline.img"
# The fix-up: owners from the tar headers, one debugfs session for all of them.
python3 - "$work/copy" > "$work/fixup.cmds" <<'PY'
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
debugfs -w -f "$work/fixup.cmds" "$work/pipeline.img" > /dev/null 2>&1
sync
t_pipe=$(elapsed "$t")

alloc() { echo $(( $(stat -c %b "$1") * 512 )); }
printf '\n%-34s %9s  %s\n' what time "ratio to lazyfs"
printf '%-34s %8.2fs\n' "lazyfs materialize" "$t_lazy"
printf '%-34s %8.2fs  %s\n' "lazyfs materialize (+ dm-verity)" "$t_lazy_verity" "$(ratio "$t_lazy_verity" "$t_lazy")"
printf '%-34s %8.2fs  %s  (lazyfs is %sx faster)\n' "skopeo+umoci+mkfs.ext4 -d+fix-up" "$t_pipe" "$(ratio "$t_pipe" "$t_lazy")" "$(ratio "$t_pipe" "$t_lazy")"
printf '%-34s %8.2fs  %s  (lazyfs takes %sx the floor)\n' "gzip -dc of the layer (floor)" "$t_floor" "$(ratio "$t_floor" "$t_lazy")" "$(ratio "$t_lazy" "$t_floor")"
printf '\nimage sizes (apparent / allocated): lazyfs %s / %s, pipeline %s / %s\n' \
  "$(numfmt --to=iec "$(stat -c %s "$work/lazyfs.img")")" "$(numfmt --to=iec "$(alloc "$work/lazyfs.img")")" \
  "$(numfmt --to=iec "$(stat -c %s "$work/pipeline.img")")" "$(numfmt --to=iec "$(alloc "$work/pipeline.img")")"
