#!/usr/bin/env bash
# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (one build, both; tests/run.sh
# and so CI run it after the normal suite), and the threaded parts (core unit tests, plugin tests,
# the conformance suite's in-process cases) under ThreadSanitizer. Each build has its own dir;
# time bounds the tests assert are scaled for instrumented builds (FERRY_TEST_TIME_SCALE).
# Usage: tests/sanitize.sh [asan-ubsan|tsan|all] [build-dir]   ("asan" means asan-ubsan)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
which=${1:-all}
case $which in
  asan | asan-ubsan | tsan | all) ;;
  *) echo "usage: tests/sanitize.sh [asan-ubsan|tsan|all] [build-dir]" >&2; exit 2 ;;
esac
"$root/tools/install-deps.sh"
source "$root/tests/support/suite.sh"
# Leaks and errors abort the process that has them; UB aborts too (built -fno-sanitize-recover).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
status=0
if [ "$which" != tsan ]; then
  # The install test builds an uninstrumented consumer against the instrumented library: skip it.
  ferry_suite "${2:-$root/build-asan}" -DFERRY_SANITIZER=address,undefined -DFERRY_BUILD_TOOLS=ON \
    -DFERRY_WARNINGS_AS_ERRORS=ON -- --timeout 900 -E "^install:" || status=1
fi
if [ "$which" = tsan ] || [ "$which" = all ]; then
  # The threaded parts: discovery thread vs. publish/take, callback threads, plugin drain threads.
  tsan_build=$root/build-tsan
  [ "$which" = tsan ] && tsan_build=${2:-$tsan_build}
  ferry_suite "$tsan_build" -DFERRY_SANITIZER=thread -DFERRY_BUILD_TOOLS=ON -- --timeout 900 \
    -L "unit|plugin|conformance" -E "torture|load" || status=1
fi
exit $status
