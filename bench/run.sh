#!/usr/bin/env bash
# lazyfs benchmarks: every figure is a ratio against a real alternative, run in this invocation
# on the same data (see ../shared/DESIGN.md, "What fast means").
#
#   bash bench/run.sh [DIR]     (as root, after packaging/setup.sh; DIR defaults to /usr/include)
#   BENCH_ONLY=index bash bench/run.sh [DIR]    (the index rows only)
#
# The image is one gzip layer holding DIR. What is compared:
#   index-igzip  lazyfs indexing the layer (first inspect),  vs  gzip -dc of the layer
#                gzip inflated by ISA-L's igzip (zlib when built without ISA-L)
#   index-zlib   the same with LAZYFS_INFLATE=zlib           vs  gzip -dc of the layer
#   materialize  lazyfs materialize (cold content cache)    vs  skopeo copy + umoci unpack +
#                                                                mkfs.ext4 -d (today's pipeline)
#   metadata     find -printf over the FUSE mount           vs  the same over the kernel's ext4
#                                                                (loop mount of the same image)
#   read         reading every file over the FUSE mount     vs  the same over the loop mount
# Caches are dropped before each cold run. Tests never assert timings; this prints them.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-/usr/include}
build=${LAZYFS_BUILD:-$PWD/build}
lazyfs=${LAZYFS_BIN:-$build/cli/lazyfs}
work=$(mktemp -d /tmp/lazyfs-bench.XXXXXX)
. bench/lib.sh
start_work

# ---- the image: an OCI layout with one gzip layer of $data ----
layout=$work/layout
make_layout "$layout" bench -C "$data" .
files=$entries
ref=oci:$layout:bench
echo "data: $data, $files entries, layer $(numfmt --to=iec "$layer_size") gzip"

# ---- index ----
drop; t=$(now); gzip -dc "$layout/blobs/sha256/$layer" > /dev/null; t_gunzip=$(elapsed "$t")
drop; t=$(now); LAZYFS_INFLATE=isal "$lazyfs" inspect -q --store "$work/store" "$ref" > /dev/null
t_index=$(elapsed "$t")
drop; t=$(now); LAZYFS_INFLATE=zlib "$lazyfs" inspect -q --store "$work/store-zlib" "$ref" > /dev/null
t_index_zlib=$(elapsed "$t")
rm -rf "$work/store-zlib"

row() { printf '%-12s %9.2fs %9.2fs %7sx  %s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")" "$4"; }
header() { printf '\n%-12s %10s %10s %8s  %s\n' what lazyfs other ratio "(other)"; }
if [ "${BENCH_ONLY:-}" = index ]; then
  header
  row index-igzip "$t_index" "$t_gunzip" "gzip -dc of the layer"
  row index-zlib "$t_index_zlib" "$t_gunzip" "gzip -dc of the layer"
  echo "(ratio = lazyfs time / other time; below 1 means lazyfs is faster)"
  exit 0
fi

# ---- materialize ----
drop; t=$(now); "$lazyfs" materialize -q --store "$work/store" "$ref" "$work/lazyfs.img" > /dev/null
t_mat=$(elapsed "$t")
drop; t=$(now)
skopeo copy -q "oci:$layout:bench" "oci:$work/copy:bench"
umoci unpack --rootless --image "$work/copy:bench" "$work/bundle" > /dev/null
size=$(stat -c %s "$work/lazyfs.img")
truncate -s "$((size * 2))" "$work/pipeline.img"
mkfs.ext4 -q -F -d "$work/bundle/rootfs" "$work/pipeline.img"
sync
t_pipe=$(elapsed "$t")
rm -rf "$work/copy" "$work/bundle" "$work/pipeline.img"

# ---- metadata and reads: FUSE against the kernel's ext4 on the same tree ----
"$lazyfs" mount -q --store "$work/store" "$ref" "$work/mnt"
mount -o loop,ro "$work/lazyfs.img" "$work/loop"
readall() { find "$1" -type f -print0 | xargs -0 cat > /dev/null; }
drop; t=$(now); walk "$work/mnt"; t_walk_fuse=$(elapsed "$t")
drop; t=$(now); walk "$work/loop"; t_walk_ext4=$(elapsed "$t")
drop; t=$(now); readall "$work/mnt"; t_read_fuse=$(elapsed "$t")
drop; t=$(now); readall "$work/loop"; t_read_ext4=$(elapsed "$t")

header
row index-igzip "$t_index" "$t_gunzip" "gzip -dc of the layer"
row index-zlib "$t_index_zlib" "$t_gunzip" "gzip -dc of the layer"
row materialize "$t_mat" "$t_pipe" "skopeo copy + umoci unpack + mkfs.ext4 -d"
row metadata "$t_walk_fuse" "$t_walk_ext4" "find over a loop-mounted ext4"
row read "$t_read_fuse" "$t_read_ext4" "cat of every file on the loop mount"
echo "(ratio = lazyfs time / other time; below 1 means lazyfs is faster)"
