#!/usr/bin/env bash
# Installs every Debian 12 package lazyfs needs to build, run, test and benchmark.
# Idempotent; run as root (or through sudo).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # the sanitizer build and the libFuzzer targets (tests/sanitize.sh)
  clang
  # the .deb: cpack computes its dependencies with dpkg-shlibdeps
  dpkg-dev
  # libraries lazyfs links against
  libfuse3-dev libcurl4-openssl-dev libssl-dev libzstd-dev zlib1g-dev libarchive-dev
  libext2fs-dev librocksdb-dev nlohmann-json3-dev libcli11-dev
  # igzip (ISA-L): gzip layers inflate several times faster than with zlib alone
  libisal-dev
  libgtest-dev libgmock-dev
  # registries.conf (TOML) for mirrors and insecure registries
  libtomlplusplus-dev
  # runtime tools
  fuse3 e2fsprogs cryptsetup-bin util-linux attr
  # end-to-end tests and the built-in example: a real registry on loopback, real images
  docker-registry busybox-static curl ca-certificates
  # the boot test: a materialized image as the root disk of a QEMU guest (NVMe, no initramfs)
  qemu-system-x86 linux-image-cloud-amd64
  # eStargz and zstd:chunked layers written by the estargz Go package, built offline
  golang-go golang-github-containerd-stargz-snapshotter-dev
  # htpasswd (bcrypt) and a self-signed certificate for the registry tests with auth and TLS
  apache2-utils openssl
  # benchmarks: the pipeline lazyfs is measured against, and the arithmetic of the ratios
  skopeo umoci bc
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root (try: sudo $0)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
