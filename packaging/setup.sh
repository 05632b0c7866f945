#!/usr/bin/env bash
# Installs what lazyfs needs (Debian 12, as root) and builds it into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build
