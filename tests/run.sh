#!/usr/bin/env bash
# Builds ferry and runs the whole test suite, then the same suite under AddressSanitizer +
# UndefinedBehaviorSanitizer in a build of its own (<build-dir>-asan; tests/sanitize.sh), each
# time checking that nothing of ours was left in /dev/shm, /dev/mqueue or the runtime directory.
# Usage: tests/run.sh [build-dir]. FERRY_SANITIZE=0 skips the instrumented run (quick local use;
# CI always runs both).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/tools/install-deps.sh"
source "$root/tests/support/suite.sh"

status=0
ferry_suite "$build" -DFERRY_WARNINGS_AS_ERRORS=ON -- --timeout 300 || status=$?
if [ "${FERRY_SANITIZE:-1}" != 0 ]; then
  bash "$root/tests/sanitize.sh" asan-ubsan "$build-asan" || status=1
fi
exit $status
