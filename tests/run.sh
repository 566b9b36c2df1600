#!/usr/bin/env bash
# Builds ferry and runs the whole test suite, then checks that nothing of ours was left in
# /dev/shm, /dev/mqueue or the runtime directory. Usage: tests/run.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/tools/install-deps.sh"
# POSIX queues are listed (and leaks found) through the mqueue file system; mount it if missing.
if [ ! -d /dev/mqueue ] || ! mountpoint -q /dev/mqueue; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue || true; fi
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_WARNINGS_AS_ERRORS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
# Test domains are named t<pid>_<n>: any such object the suite leaves behind is a leak.
runtime=${FERRY_RUNTIME_DIR:-${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/ferry}}
runtime=${runtime:-/tmp/ferry-$(id -u)}
test_objects() { ls /dev/shm /dev/mqueue "$runtime" 2>/dev/null | grep -E '^ferry\.t[0-9]+_' | sort || true; }
before=$(test_objects)

status=0
(cd "$build" && ctest -j"$(nproc)" --output-on-failure --timeout 300) || status=$?

leaks=$(comm -13 <(echo "$before") <(test_objects) | grep . || true)
if [ -n "$leaks" ]; then
  echo "LEAK: test objects left behind:"; echo "$leaks"; status=1
else
  echo "no ferry test objects left in /dev/shm, /dev/mqueue or $runtime"
fi
exit $status
