#!/usr/bin/env bash
# Benchmark of `ferry record` and `ferry play` (numbers for the README, not a test):
#  1. raw disk write speed of the output directory (dd, 1 GiB, fdatasync);
#  2. 64 B messages from one talker on shm as fast as it goes, recorded (zstd): rate, lost, CPU;
#  3. 4 MiB camera frames at 60 Hz on shm, recorded with zstd level 1 and with none: lost, CPU;
#  4. `ferry play` timing error at rate 1: a second recorder records the replay, and each replayed
#     message's publish time is compared with its original arrival time (offsets from the first).
# Usage: tools/bench/recording.sh [build-dir] [output-dir]   (output dir default: a temp dir)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
bin=$build/bin
out=${2:-$(mktemp -d)}
mkdir -p "$out"
export FERRY_PLUGIN_PATH=$build/lib/ferry/plugins
export FERRY_DOMAIN="bench_rec_$$"
hz=$(getconf CLK_TCK)
cleanup() { "$bin/ferry" clean >/dev/null 2>&1 || true; rm -f "$out"/*.mcap "$out/dd.bin"; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
now() { date +%s.%N; }

echo "== raw disk write speed of $out (dd, 1 GiB in 4 MiB blocks, fdatasync)"
dd if=/dev/zero of="$out/dd.bin" bs=4M count=256 conv=fdatasync 2>&1 | tail -1
rm -f "$out/dd.bin"

# record_run NAME COMPRESSION CONFIG -- publisher command...: prints rate, lost, recorder CPU.
record_run() {
  local name=$1 compression=$2 config=$3; shift 4
  FERRY_CONFIG=$config "$bin/ferry" record --all -o "$out/$name.mcap" --compression "$compression" \
    --buffer $((512 << 20)) >"$out/$name.log" 2>&1 &
  local rec=$! t0 t1 c0 c1
  sleep 0.3  # the recorder's first look at the registry; the publisher waits for it below anyway
  c0=$(cpu_ticks $rec); t0=$(now)
  FERRY_CONFIG=$config "$@" >"$out/$name.pub.log" 2>&1
  t1=$(now); c1=$(cpu_ticks $rec)
  kill -INT $rec; wait $rec
  local msgs lost size
  msgs=$(awk '$1 != "topic" && NF >= 5 && $(NF) ~ /^[0-9]+$/ {print $3}' "$out/$name.log" | tail -1)
  lost=$(awk '$1 != "topic" && NF >= 5 && $(NF) ~ /^[0-9]+$/ {print $NF}' "$out/$name.log" | tail -1)
  size=$(stat -c %s "$out/$name.mcap")
  awk -v n="$name" -v m="$msgs" -v l="$lost" -v s="$size" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$hz" \
    'BEGIN { d = t1 - t0; printf "%-28s %9d msgs in %6.2f s = %9.0f msg/s, lost %d, file %7.1f MiB, recorder CPU %5.1f %%\n",
             n, m, d, m / d, l, s / 1048576, 100 * (c1 - c0) / hz / d }'
  rm -f "$out/$name.mcap"
}

shm=$root/examples/configs/shm.toml
cam=$root/examples/camera/camera.toml
echo "== recording (one publisher, recorder subscribed to everything)"
record_run "64B max-rate zstd" zstd "$shm" -- "$bin/talker" --topic small --count 2000000 --size 64 \
  --wait-subscribers 1 --quiet
record_run "64B max-rate none" none "$shm" -- "$bin/talker" --topic small --count 2000000 --size 64 \
  --wait-subscribers 1 --quiet
record_run "4MiB@60Hz zstd-1" zstd "$cam" -- "$bin/camera_publisher" --count 600 --rate 60 --wait-subscribers 1
record_run "4MiB@60Hz none" none "$cam" -- "$bin/camera_publisher" --count 600 --rate 60 --wait-subscribers 1
echo "   (64 B talker alone, to a listener, for comparison:)"
FERRY_CONFIG=$shm "$bin/listener" --topic alone --count 2000000 --timeout 120 --quiet >/dev/null 2>&1 &
lis=$!
t0=$(now)
FERRY_CONFIG=$shm "$bin/talker" --topic alone --count 2000000 --size 64 --wait-subscribers 1 --quiet >/dev/null
t1=$(now)
wait $lis || true
awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%-28s %9d msgs in %6.2f s = %9.0f msg/s\n", "64B talker->listener", 2000000, t1 - t0, 2000000 / (t1 - t0) }'

echo "== ferry play timing error at rate 1 (2000 messages at 1 kHz, then 200 at 20 Hz)"
FERRY_CONFIG=$shm "$bin/ferry" record fast slow -o "$out/orig.mcap" >/dev/null 2>&1 &
rec=$!
FERRY_CONFIG=$shm "$bin/talker" --topic fast --count 2000 --rate 1000 --size 64 --wait-subscribers 1 --quiet >/dev/null
FERRY_CONFIG=$shm "$bin/talker" --topic slow --count 200 --rate 20 --size 64 --wait-subscribers 1 --quiet >/dev/null
kill -INT $rec; wait $rec
FERRY_CONFIG=$shm "$bin/ferry" record fast slow -o "$out/replay.mcap" >/dev/null 2>&1 &
rec=$!
sleep 0.5  # the replay publishers appear when play starts; the recorder finds them within 100 ms
FERRY_CONFIG=$shm "$bin/ferry" play "$out/orig.mcap" --wait 2
sleep 0.5
kill -INT $rec; wait $rec
"$bin/ferry" bag echo "$out/orig.mcap" --json >"$out/orig.jsonl"
"$bin/ferry" bag echo "$out/replay.mcap" --json >"$out/replay.jsonl"
python3 - "$out/orig.jsonl" "$out/replay.jsonl" <<'EOF'
import json, sys
def load(p):
    rows = [json.loads(l) for l in open(p)]
    return rows
orig, rep = load(sys.argv[1]), load(sys.argv[2])
# Match by (topic, message index) where the index is the talker's first payload bytes.
def key(r): return (r["topic"], r["hex"][:16] if "hex" in r else r["data"][:16])
o = {key(r): r["log_time_ns"] for r in orig}
pairs = [(o[key(r)], r["publish_time_ns"]) for r in rep if key(r) in o]
print(f"   matched {len(pairs)} of {len(orig)} recorded messages in the replay")
o0 = min(p[0] for p in pairs); r0 = min(p[1] for p in pairs)
# Offsets from the first message; the constant start-up shift is removed by the median.
errs = sorted(((r - r0) - (a - o0)) / 1e3 for a, r in pairs)
med = errs[len(errs) // 2]
dev = sorted(abs(e - med) for e in errs)
pick = lambda q: dev[min(len(dev) - 1, int(q * len(dev)))]
print(f"   timing error |actual - original| in us: p50 {pick(0.5):.1f}  p99 {pick(0.99):.1f}  max {dev[-1]:.1f}")
EOF
