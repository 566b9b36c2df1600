#!/usr/bin/env bash
# Two "hosts" over dds: network namespaces A and B joined by a veth pair (addresses from the
# RFC 2544 benchmarking range 198.18.0.0/15, which exist only inside them), each with a private
# /dev/shm (so each side has its own ferry registry, as on another machine). A talker in A, a
# listener in B: every message must arrive intact, at 64 B and 4 MiB, under block and
# drop_oldest. Then the talker is SIGKILLed and B's DDS participant must forget it within the
# participant lease (10 s, plugins/dds/README.md). Root only: otherwise skipped (exit 77) with
# a message. The namespaces, and with them the veth pair, are removed however the test ends.
# Usage: netns_test.sh <bin dir>   (FERRY_PLUGIN_PATH from the environment)
set -euo pipefail
source "$(dirname "$0")/veth_pair.sh"
bin=$1
skip() { echo "skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root; run the suite as root to check this"
command -v ip >/dev/null || skip "ip (iproute2) is not installed; tools/install-deps.sh installs it"
command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"

tag=$$
a=ferry-a-$tag b=ferry-b-$tag va=fa$tag vb=fb$tag
work=$(mktemp -d /tmp/ferry-netns-XXXXXX)
children=()
cleanup() {
  stop_children_and_namespaces "$a" "$b"
  rm -rf "$work"
}
trap cleanup EXIT
net=198.18.$((tag % 250 + 1))
join_by_veth "$a" "$b" "$va" "$vb" "$net"

# Runs a program inside namespace $1 with a private /dev/shm, in place of the calling (sub)shell,
# so that a background job's $! is the program's pid. Call it in a subshell or with &.
in_ns() {
  local ns=$1; shift
  exec ip netns exec "$ns" unshare -m sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"' sh "$@"
}

config() {  # config <file> <interface> <overflow>
  cat >"$1" <<TOML
[defaults]
transport = "dds"
overflow = "$3"
depth = 64
max_message_size = "8MiB"
block_timeout_ms = 5000
[dds]
domain_id = 42
interfaces = ["$2"]
TOML
}

failures=0
run_case() {  # run_case <overflow> <size> <count> <rate>
  local overflow=$1 size=$2 count=$3 rate=$4
  local domain=netns$tag${overflow%_*}$size
  config "$work/a.toml" "$va" "$overflow"
  config "$work/b.toml" "$vb" "$overflow"
  FERRY_DOMAIN=$domain FERRY_CONFIG=$work/b.toml in_ns "$b" "$bin/listener" --topic hosts/t --count "$count" \
    --timeout 120 --quiet >"$work/listener.out" 2>&1 &
  local listener=$!
  children+=("$listener")
  local start=$(date +%s%N)
  (FERRY_DOMAIN=$domain FERRY_CONFIG=$work/a.toml in_ns "$a" "$bin/talker" --topic hosts/t --count "$count" \
    --size "$size" --rate "$rate" --wait-subscribers 1 --wait-timeout 30 --quiet >"$work/talker.out" 2>&1) || true
  local lrc=0
  wait "$listener" || lrc=$?
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  if [ $lrc -eq 0 ] && grep -q "received $count corrupt 0" "$work/listener.out" &&
     grep -q "out_of_order 0" "$work/listener.out" && grep -q "sent $count failed 0" "$work/talker.out"; then
    echo "ok: $overflow, $count x $size B from namespace A to B in $ms ms"
  else
    echo "FAILED: $overflow, $count x $size B (listener exit $lrc)"
    sed 's/^/  talker: /' "$work/talker.out"; sed 's/^/  listener: /' "$work/listener.out"
    failures=$((failures + 1))
  fi
}

run_case block 64 2000 0
run_case block 4194304 20 0
# drop_oldest never waits for the listener: paced, so that a depth of 64 holds what is in flight.
run_case drop_oldest 64 2000 1000
run_case drop_oldest 4194304 20 10

# SIGKILL: B's DDS participant forgets the dead talker within the lease.
domain=netns${tag}kill
config "$work/a.toml" "$va" block
ip netns exec "$b" "$bin/dds_interop" watch 42 "$domain" hosts/k 60 "$vb" >"$work/watch.out" 2>&1 &
watch=$!
children+=("$watch")
FERRY_DOMAIN=$domain FERRY_CONFIG=$work/a.toml in_ns "$a" "$bin/talker" --topic hosts/k --count 100000000 --rate 20 \
  --quiet >/dev/null 2>&1 &
talker=$!
children+=("$talker")
for _ in $(seq 1 300); do grep -q matched "$work/watch.out" && break; sleep 0.1; done
# What `ferry topic info` in B says of the topic (learned through DDS discovery alone).
config "$work/b.toml" "$vb" block
info_b() { (FERRY_DOMAIN=$domain FERRY_CONFIG=$work/b.toml in_ns "$b" "$bin/ferry" --discovery 3 topic info hosts/k) 2>&1 || true; }
if ! grep -q matched "$work/watch.out"; then
  echo "FAILED: the watcher in B never saw the talker in A"; failures=$((failures + 1))
else
  if info_b | grep -Eq "^publisher +talker@[^ ]+ +[0-9]+ +remote"; then
    echo "ok: ferry topic info in B lists the talker in A as a remote publisher"
  else
    echo "FAILED: ferry topic info in B does not list the talker in A"; info_b; failures=$((failures + 1))
  fi
  kill -9 "$talker"
  killed=$(date +%s%N)
  wait "$talker" 2>/dev/null || true
  wrc=0
  wait "$watch" || wrc=$?
  at=$(sed -n 's/^unmatched at //p' "$work/watch.out")
  if [ $wrc -eq 0 ] && [ -n "$at" ]; then
    ms=$(( (at - killed) / 1000000 ))
    if [ $ms -le 12000 ]; then
      echo "ok: B forgot the SIGKILLed talker after $ms ms (lease 10 s)"
      if info_b | grep -Eq "^publisher .*remote"; then
        echo "FAILED: ferry topic info in B still lists the dead talker after the lease"; info_b; failures=$((failures + 1))
      else
        echo "ok: ferry topic info in B no longer lists it"
      fi
    else
      echo "FAILED: B forgot the SIGKILLed talker only after $ms ms (lease 10 s)"; failures=$((failures + 1))
    fi
  else
    echo "FAILED: B did not forget the SIGKILLed talker within 60 s"; cat "$work/watch.out"; failures=$((failures + 1))
  fi
fi
[ $failures -eq 0 ]
