#!/usr/bin/env bash
# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, and the threaded parts
# (core unit tests, plugin tests, the conformance suite's in-process cases) under
# ThreadSanitizer. Usage: tests/sanitize.sh [asan|tsan|all]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
which=${1:-all}
"$root/tools/install-deps.sh"
run() {  # run <build-dir> <sanitizers> <ctest args...>
  local build=$1 san=$2; shift 2
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_SANITIZER="$san" -DFERRY_BUILD_TOOLS=ON >/dev/null
  cmake --build "$build" -j"$(nproc)"
  (cd "$build" && ctest -j"$(nproc)" --output-on-failure --timeout 900 "$@")
}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
if [ "$which" = asan ] || [ "$which" = all ]; then
  # The install test builds an uninstrumented consumer against the instrumented library: skip it.
  run "$root/build-asan" address,undefined -E "^install:"
fi
if [ "$which" = tsan ] || [ "$which" = all ]; then
  # The threaded parts: discovery thread vs. publish/take, callback threads, plugin drain threads.
  run "$root/build-tsan" thread -L "unit|plugin|conformance" -E "torture|load"
fi
