#!/usr/bin/env bash
# The Debian package, installed for real: build the .deb with cpack, install it with dpkg -i,
# run the built-in example (packaging/tour.sh) against /usr/bin/lazyfs, mount an image with
# `mount -t fuse.lazyfs` and through an fstab line, unmount with fusermount3 -u, and check the
# man page, completion and systemd unit are where the system looks for them.
# Usage: deb_test.sh SOURCE_DIR BUILD_DIR (ctest passes both). Needs root and /dev/fuse.
set -euo pipefail
src=$1
build=$2
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (dpkg -i, mount)"
[ -c /dev/fuse ] || fail "/dev/fuse is missing: FUSE is needed to test the installed mount helper"

work=$(mktemp -d /tmp/lazyfs-deb.XXXXXX)
was_installed=0
dpkg -s lazyfs >/dev/null 2>&1 && was_installed=1
cleanup() {
  for m in "$work/mnt" "$work/fstab-mnt"; do
    mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" || true
  done
  [ "$was_installed" = 1 ] || dpkg --purge lazyfs >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build the package"
(cd "$build" && cpack -G DEB -B "$work/deb" >/dev/null) || fail "cpack -G DEB failed"
deb=$(ls "$work"/deb/lazyfs_*.deb) || fail "cpack wrote no .deb"
info=$(dpkg-deb --info "$deb")
grep -q '^ Depends:.*fuse3' <<<"$info" || fail "the package does not depend on fuse3"

echo "== install it"
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
[ -x /usr/bin/lazyfs ] || fail "/usr/bin/lazyfs not installed"
[ -x /usr/sbin/mount.fuse.lazyfs ] || fail "/usr/sbin/mount.fuse.lazyfs not installed"
[ -f /usr/lib/systemd/system/lazyfs@.service ] || fail "systemd unit not installed"
[ -f /usr/share/bash-completion/completions/lazyfs ] || fail "bash completion not installed"
man=$(zcat /usr/share/man/man1/lazyfs.1.gz)
grep -q '^\.SH EXIT STATUS' <<<"$man" || fail "man page missing or incomplete"
[[ $(/usr/bin/lazyfs --version) == "lazyfs "* ]] || fail "installed lazyfs --version"
bash -n /usr/share/bash-completion/completions/lazyfs || fail "completion script does not parse"

echo "== the built-in example against the installed binary"
LAZYFS_BIN=/usr/bin/lazyfs LAZYFS_BUILD=$build bash "$src/packaging/tour.sh" > "$work/tour.log" 2>&1 \
  || { cat "$work/tour.log"; fail "the tour failed against /usr/bin/lazyfs"; }
grep -q "Tour complete" "$work/tour.log" || fail "the tour did not complete"

echo "== mount -t fuse.lazyfs"
"$build/tests/support/lazyfs-fixture" "$src/packaging/tour/busybox.json" "$work/layout" busybox \
  >/dev/null || fail "could not build the fixture image"
mkdir -p "$work/mnt" "$work/fstab-mnt"
mount -t fuse.lazyfs "oci:$work/layout:busybox" "$work/mnt" -o "store=$work/store" \
  || fail "mount -t fuse.lazyfs failed"
grep -q " $work/mnt fuse.lazyfs ro," /proc/self/mounts || fail "not mounted as fuse.lazyfs ro"
[ "$(stat -c '%u:%g %a' "$work/mnt/home/user/notes.txt")" = "1000:1000 600" ] \
  || fail "owner and mode of home/user/notes.txt are not the image's"
"$work/mnt/bin/busybox" true || fail "cannot run busybox from the mount"
fusermount3 -u "$work/mnt" || fail "fusermount3 -u failed"
mountpoint -q "$work/mnt" && fail "still mounted after fusermount3 -u"

echo "== an fstab line"
printf 'oci:%s:busybox %s fuse.lazyfs store=%s,nofail,noauto 0 0\n' \
  "$work/layout" "$work/fstab-mnt" "$work/store" > "$work/fstab"
mount -T "$work/fstab" "$work/fstab-mnt" || fail "mount through an fstab line failed"
[ "$(cat "$work/fstab-mnt/etc/motd")" = "Hello from a lazyfs mount: this file came from the second layer." ] \
  || fail "etc/motd through the fstab mount is not the image's"
[ ! -e "$work/fstab-mnt/etc/hostname" ] || fail "etc/hostname, whited out by the top layer, is visible"
/usr/bin/lazyfs umount "$work/fstab-mnt" || fail "lazyfs umount failed"
echo "deb_test: OK"
