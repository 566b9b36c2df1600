# Sourced by tests/run.sh and tests/sanitize.sh (bash, with $root set to the source tree).
# Test domains are named t<pid>_<n>: any such object a suite run leaves behind is a leak.

# POSIX queues are listed (and leaks found) through the mqueue file system; mount it if missing.
if [ ! -d /dev/mqueue ] || ! mountpoint -q /dev/mqueue; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue || true; fi
fi
runtime=${FERRY_RUNTIME_DIR:-${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/ferry}}
runtime=${runtime:-/tmp/ferry-$(id -u)}
test_objects() { ls /dev/shm /dev/mqueue "$runtime" 2>/dev/null | grep -E '^ferry\.t[0-9]+_' | sort || true; }

# ferry_suite <build-dir> [cmake args...] -- [ctest args...]: configures and builds <build-dir>,
# runs the suite there, then fails if it left test objects in /dev/shm, /dev/mqueue or the
# runtime directory. Errors are returned, not left to set -e (which a caller's || turns off).
ferry_suite() {
  local build=$1 cmake_args=() status=0 before leaks
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cmake_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}" >/dev/null || return 1
  cmake --build "$build" -j"$(nproc)" || return 1
  before=$(test_objects)
  (cd "$build" && ctest -j"$(nproc)" --output-on-failure "$@") || status=$?
  leaks=$(comm -13 <(echo "$before") <(test_objects) | grep . || true)
  if [ -n "$leaks" ]; then
    echo "LEAK: test objects left behind by the suite in $build:"; echo "$leaks"; status=1
  else
    echo "no ferry test objects left in /dev/shm, /dev/mqueue or $runtime"
  fi
  return $status
}
