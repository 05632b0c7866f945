# Shared by the benchmark scripts: timing, cache dropping, one-layer OCI layouts made with tar
# and gzip (so the image is built by standard tools, not by lazyfs), and a docker-registry on
# 127.0.0.1. Source it after setting `work` (a scratch directory) and `build`.

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
drop() { drop_caches; }
ratio() { printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }
# The metadata walk: lstat of every entry, as `ls -lR` or a backup tool would.
walk() { find "$1" -printf '%m %U %G %s %T@ %p\n' > /dev/null; }
# Drops only the file's own pages, then reads it through the filesystem again.
reread() {
  dd if="$1" iflag=nocache count=0 status=none
  dd if="$1" of=/dev/null bs=1M status=none
}

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

# make_layout LAYOUT TAG TAR_ARGS... [--- TAR_ARGS...]...: an OCI layout holding one image with
# one gzip layer per group of TAR_ARGS (groups split by "---"), each `tar TAR_ARGS` (numeric
# owners, sorted, fixed mtime), gzipped at $GZIP_LEVEL (default 6). Sets layer_digests (hex, in
# order), layer_size (compressed bytes of all layers) and layer_entries (entries of all layers);
# for one layer also layer_digest (also as $layer) and $entries. With MKSTARGZ set (the path of
# tests/support/mkstargz, built by build_mkstargz), layers are written as eStargz instead, their
# TOC digest annotated as the stargz snapshotter expects.
make_layout() {
  local layout=$1 tag=$2
  shift 2
  mkdir -p "$layout/blobs/sha256"
  layer_digests=() layer_size=0 layer_entries=0
  local diff_ids="" descs="" group=()
  local d diff_id size
  add_layer() {
    tar --numeric-owner --sort=name --mtime=@1700000000 -cf "$layout/layer.tar" "$@" 2>/dev/null || true
    layer_entries=$((layer_entries + $(tar -tf "$layout/layer.tar" | wc -l)))
    local annotation=""
    if [ -n "${MKSTARGZ:-}" ]; then
      local made
      made=$("$MKSTARGZ" estargz "$layout/layer.tar" "$layout/layer.gz")
      diff_id=${made##* sha256:}
      annotation=",\"annotations\":{\"containerd.io/snapshot/stargz/toc.digest\":\"${made%% *}\"}"
    else
      diff_id=$(sha256sum "$layout/layer.tar" | cut -d' ' -f1)
      gzip "-${GZIP_LEVEL:-6}" -n -c "$layout/layer.tar" > "$layout/layer.gz"
    fi
    rm "$layout/layer.tar"
    d=$(sha256sum "$layout/layer.gz" | cut -d' ' -f1)
    size=$(stat -c %s "$layout/layer.gz")
    mv "$layout/layer.gz" "$layout/blobs/sha256/$d"
    layer_digests+=("$d")
    layer_size=$((layer_size + size))
    diff_ids+="${diff_ids:+,}\"sha256:$diff_id\""
    descs+="${descs:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$size$annotation}"
  }
  for arg in "$@"; do
    if [ "$arg" = --- ]; then add_layer "${group[@]}"; group=(); else group+=("$arg"); fi
  done
  add_layer "${group[@]}"
  layer_digest=${layer_digests[0]}
  layer=$layer_digest
  entries=$layer_entries
  local config config_size manifest manifest_size
  printf '{"architecture":"%s","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}' \
    "$(dpkg --print-architecture)" "$diff_ids" > "$layout/c"
  config=$(sha256sum "$layout/c" | cut -d' ' -f1)
  config_size=$(stat -c %s "$layout/c")
  mv "$layout/c" "$layout/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$config" "$config_size" "$descs" > "$layout/m"
  manifest=$(sha256sum "$layout/m" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$layout/m")
  mv "$layout/m" "$layout/blobs/sha256/$manifest"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$tag" > "$layout/index.json"
}

# build_mkstargz DIR: builds tests/support/mkstargz (the estargz Go package's writer, from
# Debian's golang-github-containerd-stargz-snapshotter-dev) into DIR/mkstargz.
build_mkstargz() {
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$1/gocache" \
    go build -o "$1/mkstargz" ./tests/support/mkstargz
}

# start_registry: Debian's docker-registry on a free 127.0.0.1 port, storage under $work.
# Sets registry (HOST:PORT), registry_pid, registry_log. Stop it with stop_registry.
start_registry() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  registry=127.0.0.1:$port
  registry_log=$work/registry.log
  cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $registry
  secret: lazyfs-bench
YML
  docker-registry serve "$work/registry.yml" > "$registry_log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -fs "http://$registry/v2/" > /dev/null && return 0; sleep 0.1; done
  echo "bench: docker-registry did not start (see $registry_log)" >&2
  return 1
}
stop_registry() {
  [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
  registry_pid=
}
