#!/usr/bin/env bash
# The sanitizer tier: builds lazyfs with clang, AddressSanitizer + UndefinedBehaviorSanitizer
# and libFuzzer coverage into build-asan/, runs the unit tests there (every tier but the
# end-to-end ones, which run the real binary in the main build), then runs each libFuzzer target
# for LAZYFS_FUZZ_SECONDS (default 15) from its seed corpus in tests/fuzz/corpus/.
# A sanitizer report or a fuzzer crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${LAZYFS_FUZZ_SECONDS:-15}
build=${LAZYFS_ASAN_BUILD:-build-asan}

# -O1 with line tables: what the sanitizers need for useful reports, and half the compile time
# of -O2 -g.
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -gline-tables-only" \
  -DLAZYFS_SANITIZE=ON -DLAZYFS_FUZZ=ON >/dev/null
# Only what this tier runs: the unit-test binaries of each module and the fuzz targets.
ninja -C "$build" tests/base/all tests/fetch/all tests/index/all tests/fs/all tests/convert/all \
  tests/support/all tests/fuzz/all

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
echo "== unit tests under ASan+UBSan"
ctest --test-dir "$build" --output-on-failure --timeout 600 -j2 -L '^(base|fetch|index|fs|convert|support)$'

echo "== fuzzing, ${seconds}s per target"
work=$(mktemp -d /tmp/lazyfs-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
for target in fuzz_manifest fuzz_reference fuzz_layer fuzz_toc fuzz_checkpoint fuzz_output \
    fuzz_ext4_time fuzz_registry_auth fuzz_layer_artifact; do
  mkdir -p "$work/$target"
  # New inputs go to the scratch corpus (first directory); the seeds stay as committed.
  if ! "$build/tests/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$work/" "$work/$target" "tests/fuzz/corpus/$target" \
      > "$work/$target.log" 2>&1; then
    tail -50 "$work/$target.log"
    echo "sanitize.sh: $target found a crash; the input is in $work (kept)" >&2
    trap - EXIT
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/$target.log" | grep -o '[0-9]*$')
  echo "$target: $runs executions in ${seconds}s, no crash"
done
