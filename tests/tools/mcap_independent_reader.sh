#!/usr/bin/env bash
# Proof with a reader ferry did not write: real `ferry record` processes record the talker, and
# the official TypeScript MCAP implementation (@mcap/core, run by Node.js, installed with npm into
# the build tree) checks every file: records valid, chunk CRCs, summary and indexes, every message
# in order with the right channel, schema and payload; for zstd, lz4 and none, and for a file cut
# by SIGKILL of the recorder (every message of its complete chunks, as many as ferry bag info says);
# and a user type (demo::Pose, recorded with --types) whose messages it decodes with nothing but the
# JSON Schema ferry generated from the type's serialize function.
#   mcap_independent_reader.sh <bin dir> <source dir> <work dir in the build tree> <types module>
# Exit 77 (ctest: skipped) with a reason when Node.js/npm or the npm registry is unavailable.
set -u
bin=$1 src=$2 work=$3 types=$4
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: Node.js and npm are needed to check ferry's MCAP files with @mcap/core"; exit 77
fi
mkdir -p "$work"
cp "$src/tests/tools/mcap_js/package.json" "$src/tests/tools/mcap_js/check.js" \
   "$src/tests/tools/mcap_js/check_schema.js" "$work/"
if [ ! -f "$work/node_modules/@mcap/core/package.json" ] ||
   ! cmp -s "$work/package.json" "$work/node_modules/.ferry-installed"; then
  if ! (cd "$work" && npm install --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
    cat "$work/npm.log"; echo "SKIP: npm install of @mcap/core failed (registry unreachable?)"; exit 77
  fi
  cp "$work/package.json" "$work/node_modules/.ferry-installed"
fi

export FERRY_DOMAIN="t$$_mcapjs"
export FERRY_CONFIG="$src/examples/configs/shm.toml"
dir=$(mktemp -d)
rec="" talker="" posepub=""
cleanup() {
  [ -n "$rec" ] && kill -KILL "$rec" 2>/dev/null
  [ -n "$talker" ] && kill -KILL "$talker" 2>/dev/null
  [ -n "$posepub" ] && kill -KILL "$posepub" 2>/dev/null
  "$bin/ferry" clean >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
fail=0
count=1000

for c in zstd lz4 none; do
  "$bin/ferry" record chatter -o "$dir/$c.mcap" --compression "$c" --chunk-size 4096 >"$dir/rec.log" 2>&1 &
  rec=$!
  if ! "$bin/talker" --topic chatter --count $count --rate 5000 --size 200 --wait-subscribers 1 --quiet; then
    echo "FAIL: talker ($c)"; fail=1
  fi
  kill -INT "$rec"; wait "$rec"; rc=$?; rec=""
  [ $rc -eq 0 ] || { echo "FAIL: ferry record ($c) exited with $rc"; cat "$dir/rec.log"; fail=1; }
  if out=$(node "$work/check.js" "$dir/$c.mcap" finished $count chatter); then
    echo "PASS $c: $out"
  else
    fail=1
  fi
done

# SIGKILL mid-recording: the talker keeps publishing while the recorder dies.
"$bin/ferry" record chatter -o "$dir/cut.mcap" --compression zstd --chunk-size 2048 >"$dir/rec.log" 2>&1 &
rec=$!
"$bin/talker" --topic chatter --count 100000 --rate 2000 --size 200 --wait-subscribers 1 --quiet >/dev/null 2>&1 &
talker=$!
recovered=0
for _ in $(seq 1 200); do  # up to 20 s for 500 messages to be in complete chunks
  recovered=$("$bin/ferry" bag info "$dir/cut.mcap" --json 2>/dev/null | grep -o '"messages":[0-9]*' | head -1 | cut -d: -f2)
  [ "${recovered:-0}" -ge 500 ] && break
  sleep 0.1
done
kill -KILL "$rec"; wait "$rec" 2>/dev/null; rec=""
kill -KILL "$talker"; wait "$talker" 2>/dev/null; talker=""  # it would publish for 50 s more
info=$("$bin/ferry" bag info "$dir/cut.mcap" --json)
recovered=$(echo "$info" | grep -o '"messages":[0-9]*' | head -1 | cut -d: -f2)
echo "$info" | grep -q '"finished":false' || { echo "FAIL: the cut file is reported finished: $info"; fail=1; }
[ "${recovered:-0}" -ge 500 ] || { echo "FAIL: ferry recovered only ${recovered:-0} messages"; fail=1; }
if out=$(node "$work/check.js" "$dir/cut.mcap" cut "${recovered:-0}" chatter); then
  echo "PASS cut by SIGKILL: $out"
else
  fail=1
fi
# A user type: the schema record alone decodes every message.
"$bin/ferry" record pose -o "$dir/pose.mcap" --types "$types" >"$dir/rec.log" 2>&1 &
rec=$!
"$bin/ferry_tool_helper" pub-pose pose >/dev/null 2>&1 &
posepub=$!
published=0
for _ in $(seq 1 200); do  # up to 20 s for the recorder to subscribe and 5 poses to be published
  published=$("$bin/ferry" topic info pose --json 2>/dev/null | grep -o '"messages":[0-9]*' | head -1 | cut -d: -f2)
  [ "${published:-0}" -ge 5 ] && break
  sleep 0.1
done
kill -INT "$rec"; wait "$rec"; rc=$?; rec=""
kill -KILL "$posepub"; wait "$posepub" 2>/dev/null; posepub=""
[ $rc -eq 0 ] || { echo "FAIL: ferry record (pose) exited with $rc"; cat "$dir/rec.log"; fail=1; }
[ "${published:-0}" -ge 5 ] || { echo "FAIL: only ${published:-0} poses published"; fail=1; }
pose='{"frame":"map","x":1.5,"y":-2.25,"theta":0.125,"covariance":[0.5,0,0.5]}'
if out=$(node "$work/check_schema.js" "$dir/pose.mcap" demo/Pose "$pose"); then
  echo "PASS user type decoded from its schema: $out"
else
  fail=1
fi
exit $fail
