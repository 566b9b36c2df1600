#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (sanitized) and runs each for a bounded time.
# Usage: tests/fuzz/run.sh [seconds-per-target, default 30] [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-30}
build=${2:-$root/build-fuzz}
"$root/tools/install-deps.sh" clang libclang-rt-14-dev
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFERRY_FUZZ=ON -DFERRY_BUILD_EXAMPLES=OFF -DFERRY_BUILD_TOOLS=OFF >/dev/null
targets=(fuzz_frame fuzz_reassembly fuzz_config fuzz_deserialize fuzz_mcap)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"; mkdir -p "$corpus" "$build/crashes"
  # Small valid inputs to start from where a format has magic numbers (MCAP: written by ferry record).
  [ -d "$root/tests/fuzz/seeds/$t" ] && cp -n "$root/tests/fuzz/seeds/$t"/* "$corpus"/
  echo "== $t for ${seconds}s"
  if "$build/bin/$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$build/crashes/$t-" "$corpus" >"$build/$t.log" 2>&1; then
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$build/$t.log" || true
  else
    echo "$t FAILED:"; tail -40 "$build/$t.log"; status=1
  fi
done
[ $status -eq 0 ] && echo "fuzzing finished: no crash, no leak, no timeout"
exit $status
