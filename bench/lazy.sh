#!/bin/bash
# Lazy reads against a real registry (Debian's docker-registry on 127.0.0.1), printed as ratios:
#  1. bytes fetched to read every file under /etc and /bin (a boot-like pattern) of an image made
#     from this machine's /etc and /usr/bin, against the image's compressed size;
#  2. time from `lazyfs mount` to the first byte of a small file, against `skopeo copy` of the
#     same image from the same registry (a full pull) — with the index already built (content
#     cache and blob store empty), and cold (the first mount indexes, which streams every layer);
#  3. the first mount + first byte of a store that never saw the image, with an index artifact
#     published by `lazyfs index push`: time against the full pull, bytes (every response body,
#     manifests and the referrers tag too) against the full pull's and the image's size; and
#     the same tree as an eStargz image (its TOC read instead of an artifact).
# Bytes are summed from the registry's own access log (http.response.written of blob GETs).
# Both are measured on bare loopback, and again through lazyfs-proxy shaping the link to a 20 ms
# round trip and 100 Mbit/s per connection (this kernel has no sch_netem for tc netem).
# Usage: sudo bench/lazy.sh   (needs root for FUSE; LAZYFS_BUILD=DIR for another build tree)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${LAZYFS_BUILD:-$PWD/build}
lazyfs=${LAZYFS_BIN:-$build/cli/lazyfs}
push=$build/tests/support/lazyfs-push
work=$(mktemp -d /tmp/lazyfs-lazy-bench.XXXXXX)
reg_pid=
proxy_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  mountpoint -q "$work/mnt" 2>/dev/null && "$lazyfs" umount "$work/mnt" || true
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/mnt"
. bench/lib.sh

# The image: one gzip layer of /etc and /usr/bin (as /bin), in an OCI layout.
layout=$work/layout
make_layout "$layout" boot -C / --transform 's,^usr/bin,bin,' etc usr/bin

# The registry, with its access log.
start_registry
reg_pid=$registry_pid
port=${registry##*:}
"$push" "$layout" boot "$registry" bench/boot:1 > /dev/null
ref=docker://$registry/bench/boot:1

# Bytes of blob bodies the registry sent since the log was cut at line $1.
blob_bytes() {
  tail -n +"$1" "$work/registry.log" | { grep 'response completed' || true; } |
    { grep '/blobs/' || true; } | sed -n 's/.*http.response.written=\([0-9]*\).*/\1/p' |
    awk '{s+=$1} END {print s+0}'
}
# Bytes of every response body (manifests, tags and blobs) since line $1.
all_bytes() {
  tail -n +"$1" "$work/registry.log" | { grep 'response completed' || true; } |
    sed -n 's/.*http.response.written=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}'
}
log_mark() { echo $(( $(wc -l < "$work/registry.log") + 1 )); }
forget_content() { rm -rf "$work/store/blobs/sha256" "$work/store/content/sha256"; }
small=$(cd /etc && find . -maxdepth 1 -type f -size +0 -size -4k -readable | sort | head -1)
small=${small#./}

# first_byte STORE REF [COUNTER]: mounts REF from STORE, reads the first byte of a small file and
# unmounts. Sets fb_time (from the mount command to that byte) and, given COUNTER (blob_bytes or
# all_bytes), fb_bytes (what the registry sent in that time).
first_byte() {
  local mark t
  mark=$(log_mark); t=$(now)
  "$lazyfs" mount -q --store "$1" "$2" "$work/mnt"
  head -c1 "$work/mnt/etc/$small" > /dev/null
  fb_time=$(elapsed "$t")
  [ -z "${3:-}" ] || fb_bytes=$("$3" "$mark")
  "$lazyfs" umount "$work/mnt"
}

# Cold: the first mount indexes (streams the layer once), then the first byte.
first_byte "$work/store" "$ref" blob_bytes
t_cold=$fb_time b_cold=$fb_bytes

# Indexed, content cache empty: mount, first byte.
forget_content
first_byte "$work/store" "$ref" blob_bytes
t_warm=$fb_time b_warm=$fb_bytes

# Boot-like: read every file under /etc and /bin, content cache empty.
forget_content
"$lazyfs" mount -q --store "$work/store" "$ref" "$work/mnt"
mark=$(log_mark)
find "$work/mnt/etc" "$work/mnt/bin" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true
b_boot=$(blob_bytes "$mark")
"$lazyfs" umount "$work/mnt"

# The full pull.
mark=$(log_mark); t=$(now)
skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/bench/boot:1" "oci:$work/copy:boot"
t_skopeo=$(elapsed "$t"); b_skopeo=$(blob_bytes "$mark")

# With an index artifact in the registry (`lazyfs index push` from another store): the first
# mount of a store that never saw the image imports the layer's index and downloads no layer.
"$lazyfs" index push -q --store "$work/pusher" "$ref" > /dev/null
rm -rf "$work/store2"
first_byte "$work/store2" "$ref" all_bytes
t_art=$fb_time b_art=$fb_bytes
mark=$(log_mark)
rm -rf "$work/copy3"
skopeo copy -q --src-tls-verify=false "$ref" "oci:$work/copy3:boot"
b_skopeo_all=$(all_bytes "$mark")

# The same tree as an eStargz image (written by the estargz Go package): the first mount reads
# the TOC with two range requests, then the first byte.
build_mkstargz "$work"
gzip_size=$layer_size
MKSTARGZ=$work/mkstargz make_layout "$work/layout-stargz" boot -C / --transform 's,^usr/bin,bin,' etc usr/bin
stargz_size=$layer_size layer_size=$gzip_size
"$push" "$work/layout-stargz" boot "$registry" bench/boot-stargz:1 > /dev/null
rm -rf "$work/store4"
first_byte "$work/store4" "docker://$registry/bench/boot-stargz:1" all_bytes
t_stargz=$fb_time b_stargz=$fb_bytes

# The same through a shaped link: the image is indexed under the proxy's reference first (a
# resolve; the layers are already indexed), then content is forgotten and the clock starts.
"$build/tests/support/lazyfs-proxy" "127.0.0.1:$port" 20 100 > "$work/proxy.out" &
proxy_pid=$!
for _ in $(seq 100); do [ -s "$work/proxy.out" ] && break; sleep 0.05; done
shaped=docker://$(head -1 "$work/proxy.out")/bench/boot:1
"$lazyfs" mount -q --store "$work/store" "$shaped" "$work/mnt"
"$lazyfs" umount "$work/mnt"
forget_content
first_byte "$work/store" "$shaped"
t_shaped=$fb_time
rm -rf "$work/store3"
first_byte "$work/store3" "$shaped"
t_art_shaped=$fb_time
rm -rf "$work/copy2"
t=$(now)
skopeo copy -q --src-tls-verify=false "$shaped" "oci:$work/copy2:boot"
t_skopeo_shaped=$(elapsed "$t")

ratio() { printf "%.4f" "$(echo "$1 / $2" | bc -l)"; }
echo "image: /etc + /usr/bin of this machine, one gzip layer of $(numfmt --to=iec "$layer_size") ($layer_size bytes)"
printf '\n%-34s %12s %12s %10s  %s\n' what lazyfs other ratio "(other)"
printf '%-34s %11sB %11sB %10s  %s\n' "bytes: read all of /etc and /bin" "$b_boot" "$layer_size" "$(ratio "$b_boot" "$layer_size")" "image compressed size"
printf '%-34s %11sB %11sB %10s  %s\n' "bytes: mount + first byte (indexed)" "$b_warm" "$b_skopeo" "$(ratio "$b_warm" "$b_skopeo")" "skopeo copy (full pull)"
printf '%-34s %11.3fs %11.3fs %10s  %s\n' "time: mount + first byte (indexed)" "$t_warm" "$t_skopeo" "$(ratio "$t_warm" "$t_skopeo")" "skopeo copy (full pull)"
printf '%-34s %11.3fs %11.3fs %10s  %s\n' "time: mount + first byte (cold)" "$t_cold" "$t_skopeo" "$(ratio "$t_cold" "$t_skopeo")" "skopeo copy; cold = index by streaming the layer ($b_cold B)"
printf '%-34s %11.3fs %11.3fs %10s  %s\n' "time: mount + first byte, shaped" "$t_shaped" "$t_skopeo_shaped" "$(ratio "$t_shaped" "$t_skopeo_shaped")" "skopeo copy through 20 ms RTT, 100 Mbit/s"
printf '%-34s %11.3fs %11.3fs %10s  %s\n' "time: first mount + byte, artifact" "$t_art" "$t_skopeo" "$(ratio "$t_art" "$t_skopeo")" "skopeo copy; empty store, index artifact in the registry"
printf '%-34s %11sB %11sB %10s  %s\n' "bytes: first mount + byte, artifact" "$b_art" "$b_skopeo_all" "$(ratio "$b_art" "$b_skopeo_all")" "skopeo copy (all response bodies, manifests too)"
printf '%-34s %11sB %11sB %10s  %s\n' "bytes: the same, of the image" "$b_art" "$layer_size" "$(ratio "$b_art" "$layer_size")" "image compressed size"
printf '%-34s %11.3fs %11.3fs %10s  %s\n' "time: first mount + byte, eStargz" "$t_stargz" "$t_skopeo" "$(ratio "$t_stargz" "$t_skopeo")" "skopeo copy of the gzip image; empty store"
printf '%-34s %11sB %11sB %10s  %s\n' "bytes: the same" "$b_stargz" "$stargz_size" "$(ratio "$b_stargz" "$stargz_size")" "the eStargz image's compressed size"
printf '%-34s %11.3fs %11.3fs %10s  %s\n' "time: first mount + byte, art., shaped" "$t_art_shaped" "$t_skopeo_shaped" "$(ratio "$t_art_shaped" "$t_skopeo_shaped")" "skopeo copy through 20 ms RTT, 100 Mbit/s"
echo "(ratio = lazyfs / other; loopback unless marked shaped)"
