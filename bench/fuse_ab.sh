#!/usr/bin/env bash
# Two lazyfs binaries on one store and one image, mounted alternately for ROUNDS rounds, so a
# change to the FUSE path is measured against the binary before it under the same load.
#
#   LAZYFS_BENCH_DATA=DIR bash bench/fuse_ab.sh BIN_BEFORE BIN_AFTER [ROUNDS]   (as root)
#
# DIR holds the layout bench/fuse.sh generates (run it once with the same LAZYFS_BENCH_DATA).
# Per round and binary: a fresh mount with page caches dropped, the find walk cold and warm, and
# a re-read of /big with only its own pages dropped. Prints every round, then the best of each
# and the ratio after / before.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 rounds=${3:-5}
data=${LAZYFS_BENCH_DATA:?set LAZYFS_BENCH_DATA to the data directory of bench/fuse.sh}
ref=oci:$data/layout:bench
[ -f "$data/layout/index.json" ] || { echo "no layout in $data: run bench/fuse.sh first" >&2; exit 1; }
lazyfs=$after
work=$(mktemp -d /var/tmp/lazyfs-bench-ab.XXXXXX)
. bench/lib.sh
start_work

"$after" inspect -q --store "$work/store" "$ref" > /dev/null
"$after" mount -q --store "$work/store" "$ref" "$work/mnt"
cat "$work/mnt/big" > /dev/null  # fills the content cache
"$after" umount "$work/mnt"
declare -A best
for round in $(seq "$rounds"); do
  for side in before after; do
    bin=${!side}
    drop
    "$bin" mount -q --store "$work/store" "$ref" "$work/mnt"
    t=$(now); walk "$work/mnt"; cold=$(elapsed "$t")
    t=$(now); walk "$work/mnt"; warm=$(elapsed "$t")
    cat "$work/mnt/big" > /dev/null; reread "$work/mnt/big"
    t=$(now); reread "$work/mnt/big"; rr=$(elapsed "$t")
    "$bin" umount "$work/mnt"
    printf '%-6s round %d: walk cold %5.2fs  walk warm %5.2fs  re-read %5.2fs\n' \
      "$side" "$round" "$cold" "$warm" "$rr"
    for k in cold warm rr; do
      v=${!k}
      cur=${best[$side.$k]:-}
      if [ -z "$cur" ] || [ "$(echo "$v < $cur" | bc -l)" = 1 ]; then best[$side.$k]=$v; fi
    done
  done
done
printf '\n%-10s %9s %9s %8s\n' best before after ratio
for k in cold warm rr; do
  label=$k; [ $k = rr ] && label=re-read; [ $k != rr ] && label="walk $k"
  printf '%-10s %8.2fs %8.2fs %7sx\n' "$label" "${best[before.$k]}" "${best[after.$k]}" \
    "$(ratio "${best[after.$k]}" "${best[before.$k]}")"
done
echo "(ratio = after / before; below 1 means the after binary is faster)"
