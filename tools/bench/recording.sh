#!/usr/bin/env bash
# Benchmark of `ferry record` and `ferry play` (numbers for the README, not a test):
#  1. raw disk write speed of the output directory (dd, 1 GiB, fdatasync);
#  2. 64 B messages from one talker on shm as fast as it goes, recorded (zstd): rate, lost, CPU;
#  3. 4 MiB camera frames at 60 Hz on shm, recorded with zstd level 1 and with none: lost, CPU;
#  4. `ferry play` timing error at rate 1 (tools/bench/play_timing.sh).
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
# FERRY_RECORD_BIN: another `ferry` for the recorder (to compare builds); default the build's.
ferry_rec=${FERRY_RECORD_BIN:-$bin/ferry}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
now() { date +%s.%N; }

echo "== raw disk write speed of $out (dd, 1 GiB in 4 MiB blocks, fdatasync)"
dd if=/dev/zero of="$out/dd.bin" bs=4M count=256 conv=fdatasync 2>&1 | tail -1
rm -f "$out/dd.bin"

# record_run NAME COMPRESSION CONFIG -- publisher command...: prints rate, lost, recorder CPU.
record_run() {
  local name=$1 compression=$2 config=$3; shift 4
  FERRY_CONFIG=$config "$ferry_rec" record --all -o "$out/$name.mcap" --compression "$compression" \
    --buffer $((512 << 20)) >"$out/$name.log" 2>&1 &
  local rec=$! t0 t1 c0 c1
  sleep 0.3  # the recorder's first look at the registry; the publisher waits for it below anyway
  c0=$(cpu_ticks $rec); t0=$(now)
  FERRY_CONFIG=$config "$@" >"$out/$name.pub.log" 2>&1
  t1=$(now); c1=$(cpu_ticks $rec)
  kill -INT $rec; wait $rec
  local msgs lost size copied
  msgs=$(awk '$1 != "topic" && NF >= 5 && $(NF) ~ /^[0-9]+$/ {print $3}' "$out/$name.log" | tail -1)
  lost=$(awk '$1 != "topic" && NF >= 5 && $(NF) ~ /^[0-9]+$/ {print $NF}' "$out/$name.log" | tail -1)
  # Messages copied instead of written from where they lay ("-": a recorder without that column).
  copied=$(awk '$1 == "topic" {c = ($5 == "copied")} $1 != "topic" && NF >= 6 && $(NF) ~ /^[0-9]+$/ {print c ? $(NF-1) : "-"}' \
    "$out/$name.log" | tail -1)
  size=$(stat -c %s "$out/$name.mcap")
  awk -v n="$name" -v m="$msgs" -v l="$lost" -v s="$size" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$hz" \
    -v cp="${copied:--}" \
    'BEGIN { d = t1 - t0; printf "%-28s %9d msgs in %6.2f s = %9.0f msg/s, lost %d, copied %s, file %7.1f MiB, recorder CPU %5.1f %%\n",
             n, m, d, m / d, l, cp, s / 1048576, 100 * (c1 - c0) / hz / d }'
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

echo "== ferry play timing (tools/bench/play_timing.sh)"
"$root/tools/bench/play_timing.sh" "$build" "$out"
