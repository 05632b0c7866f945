# Shared by the bench/ scripts (sourced, not run): timing helpers and the one-layer OCI layout
# every benchmark image is.

# start_work: $work/mnt (for lazyfs) and $work/loop (for the ext4), both unmounted and $work
# removed when the script exits. Needs $work and $lazyfs.
start_work() {
  cleanup() {
    mountpoint -q "$work/mnt" 2>/dev/null && "$lazyfs" umount "$work/mnt" || true
    mountpoint -q "$work/loop" 2>/dev/null && umount "$work/loop" || true
    rm -rf "$work"
  }
  trap cleanup EXIT
  mkdir -p "$work/mnt" "$work/loop"
}

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
ratio() { printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }
# The metadata walk: lstat of every entry, as `ls -lR` or a backup tool would.
walk() { find "$1" -printf '%m %U %G %s %T@ %p\n' > /dev/null; }
# Drops only the file's own pages, then reads it through the filesystem again.
reread() {
  dd if="$1" iflag=nocache count=0 status=none
  dd if="$1" of=/dev/null bs=1M status=none
}

# make_layout SRC LAYOUT TMP LEVEL: an OCI layout at LAYOUT tagged "bench" whose one layer is a
# reproducible tar of SRC (numeric owners, sorted, fixed mtime) gzipped at LEVEL, built in TMP.
# Sets layer (its digest's hex), layer_size (compressed bytes) and entries (tar members).
make_layout() {
  local src=$1 layout=$2 tmp=$3 level=$4
  mkdir -p "$layout/blobs/sha256"
  tar --numeric-owner --sort=name --mtime=@1700000000 -C "$src" -cf "$tmp/layer.tar" .
  local diff_id config config_size manifest manifest_size
  diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  entries=$(tar -tf "$tmp/layer.tar" | wc -l)
  gzip "-$level" -n -c "$tmp/layer.tar" > "$tmp/layer.tar.gz"
  rm "$tmp/layer.tar"
  layer=$(sha256sum "$tmp/layer.tar.gz" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$tmp/layer.tar.gz")
  mv "$tmp/layer.tar.gz" "$layout/blobs/sha256/$layer"
  printf '{"architecture":"%s","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' \
    "$(dpkg --print-architecture)" "$diff_id" > "$tmp/config.json"
  config=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$tmp/config.json")
  mv "$tmp/config.json" "$layout/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" > "$tmp/manifest.json"
  manifest=$(sha256sum "$tmp/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$tmp/manifest.json")
  mv "$tmp/manifest.json" "$layout/blobs/sha256/$manifest"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$manifest" "$manifest_size" > "$layout/index.json"
}
