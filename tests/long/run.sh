#!/usr/bin/env bash
# The long versions of the reliability tests: 200 rounds of crash torture, 30 s of load and
# 5000 rounds of the single-message start-up races on every transport, 200 SIGSTOP/SIGCONT
# rounds at random moments of registry start-up, then each fuzz target for 5 minutes.
# Usage: tests/long/run.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
export FERRY_TORTURE_ROUNDS=${FERRY_TORTURE_ROUNDS:-200}
export FERRY_LOAD_SECONDS=${FERRY_LOAD_SECONDS:-30}
export FERRY_TEST_REPEAT=${FERRY_TEST_REPEAT:-5000}
export FERRY_STOP_ROUNDS=${FERRY_STOP_ROUNDS:-200}
(cd "$build" && ctest --output-on-failure --timeout 7200 -R "torture|load:|never lost|random moments of start-up")
"$root/tests/fuzz/run.sh" "${FERRY_FUZZ_SECONDS:-300}"
