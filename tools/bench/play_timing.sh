#!/usr/bin/env bash
# Benchmark of `ferry play` timing at rate 1 (numbers for the README, not a test):
#  1. a recording of two talkers on shm: 2000 messages at 1 kHz, then 200 at 20 Hz;
#  2. `ferry play --timing` publishes it again and reports, for every message, when publish() was
#     called against the absolute deadline it was scheduled for (median, p99, max);
#  3. a second recorder records the replay: each replayed message's publish time (ferry's frame
#     timestamp) against its original arrival time, offsets from the first message, the constant
#     start-up shift removed by the median (end to end: includes the publish call).
# Usage: tools/bench/play_timing.sh [build-dir] [output-dir]   (output dir default: a temp dir)
# FERRY_PLAY_PREFIX runs the player under a command, e.g. "chrt -f 10" (real-time priority, root).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
bin=$build/bin
made_out=""
[ -n "${2:-}" ] || made_out=$(mktemp -d)
out=${2:-$made_out}
mkdir -p "$out"
export FERRY_PLUGIN_PATH=$build/lib/ferry/plugins
export FERRY_DOMAIN="bench_play_$$"
export FERRY_CONFIG=$root/examples/configs/shm.toml
rec=""
cleanup() {
  [ -n "$rec" ] && kill -KILL "$rec" 2>/dev/null
  "$bin/ferry" clean >/dev/null 2>&1 || true
  rm -f "$out/orig.mcap" "$out/replay.mcap" "$out/orig.jsonl" "$out/replay.jsonl"
  [ -z "$made_out" ] || rmdir "$made_out"
}
trap cleanup EXIT

echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPU(s)"
"$bin/ferry" record fast slow -o "$out/orig.mcap" >/dev/null 2>&1 &
rec=$!
"$bin/talker" --topic fast --count 2000 --rate 1000 --size 64 --wait-subscribers 1 --quiet >/dev/null
"$bin/talker" --topic slow --count 200 --rate 20 --size 64 --wait-subscribers 1 --quiet >/dev/null
kill -INT $rec; wait $rec; rec=""

"$bin/ferry" record fast slow -o "$out/replay.mcap" >/dev/null 2>&1 &
rec=$!
# The replay's topics appear when play starts; the recorder finds them within 0.1 s, so the
# first messages of the replay may be missing from its recording (the match count says so).
${FERRY_PLAY_PREFIX:-} "$bin/ferry" play "$out/orig.mcap" --timing --wait 2 | sed 's/^/   /'
kill -INT $rec; wait $rec; rec=""

"$bin/ferry" bag echo "$out/orig.mcap" --json >"$out/orig.jsonl"
"$bin/ferry" bag echo "$out/replay.mcap" --json >"$out/replay.jsonl"
python3 - "$out/orig.jsonl" "$out/replay.jsonl" <<'PY'
import json, sys
orig = [json.loads(l) for l in open(sys.argv[1])]
rep = [json.loads(l) for l in open(sys.argv[2])]
# Match by (topic, the talker's message index in the first payload bytes).
def key(r): return (r["topic"], r["hex"][:16] if "hex" in r else r["data"][:16])
o = {key(r): r["log_time_ns"] for r in orig}
pairs = [(o[key(r)], r["publish_time_ns"]) for r in rep if key(r) in o]
print(f"   end to end: matched {len(pairs)} of {len(orig)} recorded messages in the replay")
if pairs:
    o0 = min(p[0] for p in pairs); r0 = min(p[1] for p in pairs)
    errs = sorted(((r - r0) - (a - o0)) / 1e3 for a, r in pairs)
    med = errs[len(errs) // 2]
    dev = sorted(abs(e - med) for e in errs)
    pick = lambda q: dev[min(len(dev) - 1, int(q * len(dev)))]
    print(f"   end to end: |replayed publish time - original arrival time| in us: "
          f"median {pick(0.5):.1f}  p99 {pick(0.99):.1f}  max {dev[-1]:.1f}")
PY
