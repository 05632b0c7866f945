#!/usr/bin/env bash
# Boots a materialized image: builds a two-layer image (busybox and an /init script that prints
# a marker with the owner and mode of an image file, then reboots), materializes it with lazyfs,
# and boots it under QEMU as the root disk, an NVMe drive, with Debian's cloud kernel (ext4 and
# NVMe built in, so no initramfs). Software emulation; a few seconds. No network device.
# Usage: boot_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
fail() { echo "boot_test: FAIL: $*" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is missing (packaging/install-deps.sh installs qemu-system-x86)"
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1)
[ -n "$kernel" ] || fail "no /boot/vmlinuz-*-cloud-amd64 (packaging/install-deps.sh installs linux-image-cloud-amd64)"

work=$(mktemp -d /tmp/lazyfs-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$build/tests/support/lazyfs-fixture" "$src/tests/boot/guest.json" "$work/layout" guest >/dev/null \
  || fail "could not build the guest image"
"$build/cli/lazyfs" materialize -q --store "$work/store" "oci:$work/layout:guest" "$work/guest.img" \
  || fail "lazyfs materialize failed"

timeout 120 qemu-system-x86_64 -machine q35 -m 256 -nographic -no-reboot -nic none \
  -kernel "$kernel" \
  -append "console=ttyS0 root=/dev/nvme0n1 ro rootfstype=ext4 rootwait init=/init panic=-1" \
  -drive "file=$work/guest.img,if=none,id=root,format=raw,readonly=on" \
  -device nvme,drive=root,serial=lazyfs > "$work/console.log" 2>&1 \
  || { tail -40 "$work/console.log"; fail "qemu exited with an error or timed out"; }

grep -a -q "LAZYFS-GUEST owner=1000:1000:600 owned by 1000" "$work/console.log" \
  || { tail -40 "$work/console.log"; fail "the guest did not run /init from the image and print the marker"; }
grep -a -q "^/dev/root / ext4 ro" "$work/console.log" \
  || { tail -40 "$work/console.log"; fail "the root filesystem is not the read-only ext4 image"; }
echo "boot_test: OK (kernel $kernel)"
