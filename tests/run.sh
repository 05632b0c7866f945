#!/usr/bin/env bash
# Runs the whole test suite against build/ (unit, filesystem, end-to-end and packaging tiers),
# then the sanitizer tier (tests/sanitize.sh: unit tests under ASan+UBSan, and the fuzzers).
# End-to-end tests start Debian's docker-registry on 127.0.0.1, mount with FUSE and loop-mount
# ext4 images: run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "tests/run.sh: the end-to-end tests mount filesystems and must run as root" >&2
  exit 1
fi
ctest --test-dir build --output-on-failure --timeout 600 -j2 "$@"
bash tests/sanitize.sh
