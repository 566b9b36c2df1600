#!/usr/bin/env bash
# `ferry bridge` between two sites, each with its own ferry domain on shm and a bridge to dds.
#   loopback: both sites on this host (two FERRY_DOMAINs), Cyclone restricted to lo. Any user.
#   netns:    each site in a network namespace of its own with a private /dev/shm and runtime
#             directory, joined by a veth pair (198.18.0.0/15, RFC 2544). Root only: otherwise
#             skipped (exit 77) with a message. The namespaces go however the test ends.
# Checks:
#   1. talkers on shm in A and B, listeners on shm in A and B: each listener gets every message
#      of both talkers exactly once, in order per publisher; each bridge forwarded exactly one
#      talker's messages each way and skipped what bridges published (no echo, no loop).
#   2. a streaming talker in A, the bridge of B and a listener in B are SIGKILLed; the bridge of A
#      lives on.
#   3. B's bridge restarted: a talker in B reaches a listener in A, every message exactly once.
# Usage: bridge_test.sh <bin dir> loopback|netns   (FERRY_PLUGIN_PATH from the environment)
set -euo pipefail
source "$(dirname "$0")/veth_pair.sh"
bin=$1 mode=$2
skip() { echo "skipped: $*"; exit 77; }
tag=$$
n=2000
work=$(mktemp -d /tmp/ferry-bridge-XXXXXX)
children=()
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }

if [ "$mode" = netns ]; then
  [ "$(id -u)" -eq 0 ] || skip "network namespaces need root; run the suite as root to check this"
  command -v ip >/dev/null || skip "ip (iproute2) is not installed; tools/install-deps.sh installs it"
  command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
fi

a=ferry-ba-$tag b=ferry-bb-$tag va=ba$tag vb=bb$tag
cleanup() {
  stop_children_and_namespaces "$a" "$b"
  if [ "$mode" != netns ]; then
    for d in "${doms[@]}"; do FERRY_DOMAIN=$d "$bin/ferry" clean >/dev/null 2>&1 || true; done
  fi
  rm -rf "$work"
}
doms=()
trap cleanup EXIT

if [ "$mode" = netns ]; then
  net=198.19.$((tag % 250 + 1))
  join_by_veth "$a" "$b" "$va" "$vb" "$net"
  if_a=$va if_b=$vb
  # Same names on both sides, as on two machines: only the namespaces keep them apart.
  dom_a=bridge$tag dom_b=bridge$tag net_dom=bnet$tag
  mkdir -p "$work/A/shm" "$work/A/run" "$work/B/shm" "$work/B/run"
  chmod 700 "$work/A/run" "$work/B/run"
else
  if_a=lo if_b=lo
  dom_a=bA$tag dom_b=bB$tag net_dom=bnet$tag
  doms=("$dom_a" "$dom_b" "$net_dom")
fi

for site in A B; do
  iface=$if_a; [ $site = B ] && iface=$if_b
  cat >"$work/$site.toml" <<TOML
[defaults]
transport = "shm"
depth = 64
block_timeout_ms = 5000
[dds]
domain_id = 43
interfaces = ["$iface"]
[bridge]
out = ["chat*"]
in = ["chat*"]
network_domain = "$net_dom"
TOML
done

# site <A|B> <program> [args...]: runs the program at that site, in place of the calling
# (sub)shell so that a background job's $! is the program's pid.
site() {
  local s=$1; shift
  local dom=$dom_a; [ "$s" = B ] && dom=$dom_b
  if [ "$mode" = netns ]; then
    local ns=$a; [ "$s" = B ] && ns=$b
    exec env FERRY_DOMAIN="$dom" FERRY_CONFIG="$work/$s.toml" FERRY_RUNTIME_DIR="$work/$s/run" \
      ip netns exec "$ns" unshare -m sh -c 'mount --bind "$0" /dev/shm && exec "$@"' "$work/$s/shm" "$@"
  fi
  exec env FERRY_DOMAIN="$dom" FERRY_CONFIG="$work/$s.toml" "$@"
}

# wait_for <file> <text> <seconds>: until the file has a line containing text (wait_re: a
# line matching an extended regular expression).
wait_for() { wait_grep -F "$@"; }
wait_re() { wait_grep -E "$@"; }
wait_grep() {
  local how=$1 file=$2 text=$3 deadline=$(( $(date +%s) + $4 ))
  until grep -q "$how" -- "$text" "$file" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

start_bridge() {  # start_bridge <A|B>; sets bridge_<site>
  (site "$1" "$bin/ferry" bridge >>"$work/bridge$1.out" 2>&1) &
  local pid=$!
  children+=("$pid")
  eval "bridge_$1=$pid"
}

listener() {  # listener <site> <topic> <count> <out>
  (site "$1" "$bin/listener" --topic "$2" --count "$3" --timeout 60 --quiet --progress-ms 100 >"$4" 2>&1) &
  children+=("$!")
  last=$!
}

check_listener() {  # check_listener <pid> <out> <count> <publishers> <what>
  local rc=0
  wait "$1" || rc=$?
  if [ $rc -eq 0 ] && grep -q "^received $3 corrupt 0" "$2" && grep -q "^publishers $4 out_of_order 0" "$2"; then
    echo "ok: $5: $3 messages, each once, in order"
  else
    fail "$5 (listener exit $rc)"; sed 's/^/  /' "$2" | grep -v progress
  fi
}

# 1. Both ways at once, both sites publishing and listening.
start_bridge A
start_bridge B
wait_for "$work/bridgeA.out" "network domain" 20 || fail "bridge A did not start"
wait_for "$work/bridgeB.out" "network domain" 20 || fail "bridge B did not start"
listener A chatter $((2 * n)) "$work/la.out"; la=$last
listener B chatter $((2 * n)) "$work/lb.out"; lb=$last
wait_for "$work/bridgeA.out" "in 'chatter'" 20 || fail "bridge A did not import chatter"
wait_for "$work/bridgeB.out" "in 'chatter'" 20 || fail "bridge B did not import chatter"
(site A "$bin/talker" --topic chatter --count $n --rate 4000 --wait-subscribers 2 --quiet >"$work/ta.out" 2>&1) &
ta=$!; children+=("$ta")
# B starts once A's bridge taps chatter: then every message of B that A's bridge republishes in A
# passes A's outward tap, which must skip all of them.
wait_for "$work/bridgeA.out" "out 'chatter'" 20 || fail "bridge A did not export chatter"
(site B "$bin/talker" --topic chatter --count $n --rate 4000 --wait-subscribers 2 --quiet >"$work/tb.out" 2>&1) &
tb=$!; children+=("$tb")
wait "$ta" || fail "talker A: $(cat "$work/ta.out")"
wait "$tb" || fail "talker B: $(cat "$work/tb.out")"
check_listener "$la" "$work/la.out" $((2 * n)) 2 "site A heard its own talker and B's"
check_listener "$lb" "$work/lb.out" $((2 * n)) 2 "site B heard its own talker and A's"
kill -TERM "$bridge_A" "$bridge_B"
wait "$bridge_A" || fail "bridge A exited with an error"
wait "$bridge_B" || fail "bridge B exited with an error"
for s in A B; do
  for dir in out in; do
    if grep -q "^bridge: $dir 'chatter': forwarded $n, skipped [0-9]* (published by a bridge), failed 0" "$work/bridge$s.out"; then
      echo "ok: bridge $s forwarded exactly $n messages $dir"
    else
      fail "bridge $s did not forward exactly $n messages $dir"; sed 's/^/  /' "$work/bridge$s.out"
    fi
  done
done
grep -q "^bridge: out 'chatter': forwarded $n, skipped $n " "$work/bridgeA.out" ||
  fail "bridge A's outward tap did not skip exactly the $n messages it brought in from B"

# 2. Peers die: a streaming talker in A, B's bridge and B's listener, all SIGKILLed.
: >"$work/bridgeA.out" >"$work/bridgeB.out"
start_bridge A
start_bridge B
listener B chatter 100000000 "$work/lb2.out"; lb2=$last
wait_for "$work/bridgeB.out" "in 'chatter'" 20 || fail "bridge B did not import chatter again"
(site A "$bin/talker" --topic chatter --count 100000000 --rate 1000 --wait-subscribers 1 --quiet >/dev/null 2>&1) &
ta2=$!; children+=("$ta2")
wait_re "$work/lb2.out" "progress received [1-9]" 30 || fail "nothing reached B while streaming"
kill -9 "$ta2" "$bridge_B" "$lb2"
wait "$ta2" "$bridge_B" "$lb2" 2>/dev/null || true
if kill -0 "$bridge_A" 2>/dev/null; then echo "ok: bridge A lives on after its talker, the far bridge and a listener were SIGKILLed"
else fail "bridge A died with its peers"; fi

# 3. B's bridge again; a talker in B, a listener in A, on a topic new to both bridges.
start_bridge B
wait_for "$work/bridgeB.out" "network domain" 20 || fail "bridge B did not restart"
listener A chatter2 $n "$work/la3.out"; la3=$last
wait_for "$work/bridgeA.out" "in 'chatter2'" 20 || fail "bridge A did not import chatter2"
(site B "$bin/talker" --topic chatter2 --count $n --rate 4000 --wait-subscribers 1 --quiet >"$work/tb3.out" 2>&1) &
tb3=$!; children+=("$tb3")
wait "$tb3" || fail "talker B: $(cat "$work/tb3.out")"
check_listener "$la3" "$work/la3.out" $n 1 "after the far bridge's SIGKILL and restart, A heard B"
kill -TERM "$bridge_A" "$bridge_B"
wait "$bridge_A" || fail "bridge A exited with an error"
wait "$bridge_B" || fail "bridge B exited with an error"
grep -q "no dds subscriber yet" "$work/bridgeB.out" && fail "bridge B published chatter2 before the network matched"

if [ "$mode" = loopback ]; then
  for d in "${doms[@]}"; do FERRY_DOMAIN=$d "$bin/ferry" clean >/dev/null 2>&1 || true; done
  left=$(ls /dev/shm | grep -E "^ferry\.($dom_a|$dom_b|$net_dom)\." | grep -v registry || true)
  [ -z "$left" ] || fail "left in /dev/shm: $left"
fi
[ $failures -eq 0 ]
