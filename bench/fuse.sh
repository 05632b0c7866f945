#!/usr/bin/env bash
# FUSE speed: a lazyfs mount against the kernel's own ext4 (a loop mount of the image `lazyfs
# materialize` writes from the same index), on one tree, in one run (../shared/DESIGN.md, "What
# fast means").
#
#   bash bench/fuse.sh [FILES] [BIG_MIB]     (as root; defaults: 100000 files, a 1024 MiB file)
#
# The image is one gzip layer: FILES small files (deterministic content, 1-2000 bytes, 1000 per
# directory) and /big, BIG_MIB MiB of text. What is compared, lazyfs vs loop-mounted ext4:
#   walk cold     find -printf (lstat of every entry) right after mounting, page caches dropped
#   walk warm     the same again: what each kernel's dentry/inode caches and lazyfs's own keep
#   read warm     dd bs=1M of /big with its pages in the page cache (both: memory copies)
#   read re-read  dd bs=1M of /big after dropping only /big's pages (dd iflag=nocache), so every
#                 byte goes through the filesystem again while the storage under it (lazyfs's
#                 content cache file, the loop device's backing file) stays in memory: the cost
#                 of the FUSE round trips themselves
# Each figure is the best of LAZYFS_BENCH_ROUNDS (3) rounds.
# LAZYFS_BIN picks the binary (default build/cli/lazyfs); LAZYFS_BENCH_DATA=DIR keeps the
# generated layout there and reuses it (to compare two binaries on the same image).
# Tests never assert timings; this prints them, as ratios (lazyfs / ext4; 1.00 = the kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-100000}
big_mib=${2:-1024}
lazyfs=${LAZYFS_BIN:-$PWD/build/cli/lazyfs}
work=$(mktemp -d /var/tmp/lazyfs-bench-fuse.XXXXXX)
data=${LAZYFS_BENCH_DATA:-$work/data}
. bench/lib.sh
start_work

# ---- the image: an OCI layout with one gzip layer (gzip -1: the content is not the point) ----
layout=$data/layout
if [ ! -f "$layout/index.json" ]; then
  mkdir -p "$data/tree"
  python3 - "$data/tree" "$files" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "tree", "d%03d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    line = b"file %d of the benchmark tree\n" % i
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write((line * (1 + i % 67))[: 1 + (i * 7919) % 2000])
EOF
  # seq dies of SIGPIPE once head has enough, which pipefail would take for a failure.
  { seq 1 1000000000 || true; } | head -c "$((big_mib << 20))" > "$data/tree/big"
  GZIP_LEVEL=1 make_layout "$layout" bench -C "$data/tree" .
  rm -rf "$data/tree"
fi
ref=oci:$layout:bench
echo "image: $files small files + a $big_mib MiB file, one gzip layer ($lazyfs)"

# ---- the same tree twice: lazyfs over FUSE, and ext4 written by lazyfs on a loop mount ----
"$lazyfs" materialize -q --store "$work/store" "$ref" "$work/tree.img" > /dev/null
mount -o loop,ro "$work/tree.img" "$work/loop"
"$lazyfs" mount -q --store "$work/store" "$ref" "$work/mnt"
# Fill lazyfs's content cache (the first read of a layer extracts it), then start afresh.
cat "$work/mnt/big" > /dev/null
"$lazyfs" umount "$work/mnt"

# Each figure is the best of $rounds rounds (LAZYFS_BENCH_ROUNDS, default 3): on a shared machine
# the minimum is the time the work itself takes, the rest is other load.
rounds=${LAZYFS_BENCH_ROUNDS:-3}
best() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
timed() { local t; t=$(now); "$@"; elapsed "$t"; }
t_walk_fuse= t_walk_fuse_warm= t_walk_ext4= t_walk_ext4_warm=
t_read_fuse= t_read_ext4= t_reread_fuse= t_reread_ext4=
for _ in $(seq "$rounds"); do
  mountpoint -q "$work/mnt" && "$lazyfs" umount "$work/mnt"
  drop
  "$lazyfs" mount -q --store "$work/store" "$ref" "$work/mnt"
  t_walk_fuse=$(best "$t_walk_fuse" "$(timed walk "$work/mnt")")
  t_walk_fuse_warm=$(best "$t_walk_fuse_warm" "$(timed walk "$work/mnt")")
  drop
  t_walk_ext4=$(best "$t_walk_ext4" "$(timed walk "$work/loop")")
  t_walk_ext4_warm=$(best "$t_walk_ext4_warm" "$(timed walk "$work/loop")")

  cat "$work/mnt/big" "$work/loop/big" > /dev/null
  t_read_fuse=$(best "$t_read_fuse" "$(timed dd if="$work/mnt/big" of=/dev/null bs=1M status=none)")
  t_read_ext4=$(best "$t_read_ext4" "$(timed dd if="$work/loop/big" of=/dev/null bs=1M status=none)")
  reread "$work/mnt/big"; reread "$work/loop/big"  # settle what stays cached under each
  t_reread_fuse=$(best "$t_reread_fuse" "$(timed reread "$work/mnt/big")")
  t_reread_ext4=$(best "$t_reread_ext4" "$(timed reread "$work/loop/big")")
done

mib_s() { printf "%.0f MiB/s" "$(echo "$big_mib / $1" | bc -l)"; }
printf '\n%-13s %10s %10s %8s\n' what lazyfs ext4 ratio
printf '%-13s %9.2fs %9.2fs %7sx\n' "walk cold" "$t_walk_fuse" "$t_walk_ext4" "$(ratio "$t_walk_fuse" "$t_walk_ext4")"
printf '%-13s %9.2fs %9.2fs %7sx\n' "walk warm" "$t_walk_fuse_warm" "$t_walk_ext4_warm" "$(ratio "$t_walk_fuse_warm" "$t_walk_ext4_warm")"
printf '%-13s %9.2fs %9.2fs %7sx  (%s vs %s)\n' "read warm" "$t_read_fuse" "$t_read_ext4" "$(ratio "$t_read_fuse" "$t_read_ext4")" "$(mib_s "$t_read_fuse")" "$(mib_s "$t_read_ext4")"
printf '%-13s %9.2fs %9.2fs %7sx  (%s vs %s)\n' "read re-read" "$t_reread_fuse" "$t_reread_ext4" "$(ratio "$t_reread_fuse" "$t_reread_ext4")" "$(mib_s "$t_reread_fuse")" "$(mib_s "$t_reread_ext4")"
echo "(ratio = lazyfs time / ext4 time; 1.00 is the kernel's own filesystem)"
if "$lazyfs" stats "$work/mnt" > "$work/stats" 2>/dev/null; then
  echo; echo "lazyfs stats of the mount:"; cat "$work/stats"
fi
