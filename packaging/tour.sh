#!/usr/bin/env bash
# A tour of lazyfs on a built-in example, with no internet:
#   1. build a two-layer image from Debian's busybox-static (owners, modes, a whiteout, a device),
#   2. push it to a docker-registry started on 127.0.0.1,
#   3. mount it lazily over FUSE and look around (ls -ln, cat, run busybox from the image),
#   4. materialize it as an ext4 image, check it with e2fsck and a read-only loop mount, and
#      compare that listing with the FUSE mount's,
#   5. clean up.
# Run as root after packaging/setup.sh (the README's first command does both).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${LAZYFS_BUILD:-$root/build}
lazyfs=${LAZYFS_BIN:-$build/cli/lazyfs}
fixture=$build/tests/support/lazyfs-fixture
push=$build/tests/support/lazyfs-push

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

work=$(mktemp -d /tmp/lazyfs-tour.XXXXXX)
registry_pid=
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && "$lazyfs" umount "$work/mnt" || true
  mountpoint -q "$work/img" 2>/dev/null && umount "$work/img" || true
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export LAZYFS_STORE=$work/store
mkdir -p "$work/mnt" "$work/img"

step "1. Build an image from Debian's busybox-static (two layers)"
run "$fixture" packaging/tour/busybox.json "$work/layout" busybox

step "2. Start a registry on 127.0.0.1 and push the image"
for port in $(shuf -i 20000-45000 -n 20); do
  cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    kill -0 "$registry_pid" 2>/dev/null || break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  kill "$registry_pid" 2>/dev/null || true
  registry_pid=
done
[ -n "$registry_pid" ] || { echo "tour: could not start docker-registry" >&2; exit 1; }
ref=docker://127.0.0.1:$port/tour/busybox:1.0
run "$push" "$work/layout" busybox "127.0.0.1:$port" tour/busybox:1.0
run "$lazyfs" inspect -q "$ref"

step "3. Mount it: metadata from the index, content fetched on first read"
run "$lazyfs" mount "$ref" "$work/mnt"
run ls -ln "$work/mnt" "$work/mnt/etc" "$work/mnt/home/user" "$work/mnt/dev"
run cat "$work/mnt/etc/motd"
echo "# /etc/hostname was whited out by layer 2:"
run ls "$work/mnt/etc/hostname" || true
run getfattr -d "$work/mnt/etc/motd"
echo "# run a program from the image, in the image:"
run chroot "$work/mnt" /bin/sh -c 'echo "hello from busybox inside the image"; id; ls -l /usr/bin'
(cd "$work/mnt" && find . -mindepth 1 -printf '%M %U:%G %n %s %p %l\n' | sort) > "$work/fuse.list"

step "4. Materialize it as an ext4 image and check it"
run "$lazyfs" materialize "$ref" "$work/busybox.img"
run e2fsck -fn "$work/busybox.img"
run mount -o loop,ro "$work/busybox.img" "$work/img"
(cd "$work/img" && find . -mindepth 1 -path ./lost+found -prune -o -printf '%M %U:%G %n %s %p %l\n' | sort) \
  > "$work/ext4.list"
# Directory sizes differ by design (FUSE reports 0, ext4 its block size), and ext4's root holds
# lost+found: compare everything below the root.
strip_dir_sizes() { awk '$1 ~ /^d/ {$4 = "-"} {print}' "$1"; }
if diff <(strip_dir_sizes "$work/fuse.list") <(strip_dir_sizes "$work/ext4.list"); then
  echo "The FUSE mount and the ext4 image show the same $(wc -l < "$work/ext4.list") entries (types, modes, owners, link counts, sizes, targets)."
else
  echo "tour: the FUSE mount and the ext4 image differ (above)" >&2
  exit 1
fi
run cmp "$work/mnt/bin/busybox" "$work/img/bin/busybox"
run umount "$work/img"

step "5. Clean up"
run "$lazyfs" umount "$work/mnt"
echo "Tour complete."
