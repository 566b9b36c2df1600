#!/usr/bin/env bash
# Remote endpoints in `ferry topic list`, `topic info` and `node list`: two sites with the same
# FERRY_DOMAIN, each with a private /dev/shm and runtime directory (so a registry of its own, as
# on another machine), a talker on a dds topic at one and a listener at the other. Each site's
# tool must list the other site's endpoint, marked remote with its host, next to its own.
#   loopback: both sites on lo, in mount namespaces (unshare; unprivileged user namespaces
#             suffice). Skipped (exit 77), with the reason, where neither works.
#   netns:    each site in a network namespace of its own, joined by a veth pair (198.18.0.0/15,
#             RFC 2544). Root only: otherwise skipped. The namespaces go however the test ends.
# Usage: discovery_test.sh <bin dir> loopback|netns   (FERRY_PLUGIN_PATH from the environment)
set -euo pipefail
source "$(dirname "$0")/veth_pair.sh"
bin=$1 mode=$2
skip() { echo "skipped: $*"; exit 77; }
tag=$$
work=$(mktemp -d /tmp/ferry-discovery-XXXXXX)
children=()
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }
a=ferry-da-$tag b=ferry-db-$tag va=da$tag vb=db$tag
cleanup() {
  stop_children_and_namespaces "$a" "$b"
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/A/shm" "$work/A/run" "$work/B/shm" "$work/B/run"
chmod 700 "$work/A/run" "$work/B/run"

unshare_args=(-m)
if [ "$mode" = netns ]; then
  [ "$(id -u)" -eq 0 ] || skip "network namespaces need root; run the suite as root to check this"
  command -v ip >/dev/null || skip "ip (iproute2) is not installed; tools/install-deps.sh installs it"
  command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
  net=198.18.$((tag % 250 + 1))
  join_by_veth "$a" "$b" "$va" "$vb" "$net"
  if_a=$va if_b=$vb
else
  command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
  [ "$(id -u)" -eq 0 ] || unshare_args=(-r -m)
  unshare "${unshare_args[@]}" sh -c 'mount --bind "$0" /dev/shm' "$work/A/shm" 2>/dev/null ||
    skip "cannot give a process a private /dev/shm here (no mount namespaces, no unprivileged user namespaces)"
  if_a=lo if_b=lo
fi
domain=disc$tag
for s in A B; do
  iface=$if_a; [ $s = B ] && iface=$if_b
  printf '[defaults]\ntransport = "dds"\n[dds]\ndomain_id = 44\ninterfaces = ["%s"]\n' "$iface" >"$work/$s.toml"
done

# site <A|B> <program> [args...]: runs the program at that site, in place of the calling (sub)shell.
site() {
  local s=$1; shift
  local pre=()
  if [ "$mode" = netns ]; then
    pre=(ip netns exec "$a"); [ "$s" = B ] && pre=(ip netns exec "$b")
  fi
  exec env FERRY_DOMAIN="$domain" FERRY_CONFIG="$work/$s.toml" FERRY_RUNTIME_DIR="$work/$s/run" \
    "${pre[@]}" unshare "${unshare_args[@]}" sh -c 'mount --bind "$0" /dev/shm && exec "$@"' "$work/$s/shm" "$@"
}

(site A "$bin/talker" --topic disc/t --count 100000000 --rate 50 --quiet >/dev/null 2>&1) &
children+=("$!")
# A topic with no endpoint at B: B's tools reach it through discovery alone.
(site A "$bin/talker" --topic disc/only --count 100000000 --rate 50 --quiet >/dev/null 2>&1) &
children+=("$!")
(site B "$bin/listener" --topic disc/t --count 100000000 --timeout 120 --quiet --progress-ms 100 >"$work/l.out" 2>&1) &
children+=("$!")
# Both sides up and matched: the listener has received something.
deadline=$(( $(date +%s) + 30 ))
until grep -q "progress received [1-9]" "$work/l.out" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || { fail "the listener in B never heard the talker in A"; break; }
  sleep 0.05
done
host=$(hostname)

# check <site> <what> <regex> <ferry args...>
check() {
  local s=$1 what=$2 re=$3; shift 3
  local out rc=0
  out=$( (site "$s" "$bin/ferry" --discovery 3 "$@") 2>&1) || rc=$?
  if [ $rc -eq 0 ] && grep -Eq -- "$re" <<<"$out"; then
    echo "ok: $what"
  else
    fail "$what (exit $rc)"; sed 's/^/  /' <<<"$out"
  fi
}
check B "B's topic list shows A's talker as remote, with its host, next to its own listener" \
  "^disc/t +bytes +dds +1 +1 .*listener\(sub\).*talker@$host\(pub,remote\)|^disc/t +bytes +dds +1 +1 .*talker@$host\(pub,remote\).*listener\(sub\)" \
  topic list -v --window 0
check B "B's topic info lists A's talker as a remote publisher" \
  "^publisher +talker@$host +[0-9]+ +remote" topic info disc/t
check B "B's node list shows A's talker as remote" "^talker@$host +[0-9]+ +1 +0 +disc/t" node list
check B "JSON marks it remote, with its host" "\"node\":\"talker\",\"pid\":[0-9]+,\"role\":\"publisher\".*\"remote\":true,\"host\":\"$host\"" \
  --json topic info disc/t
check A "A's topic info lists B's listener as remote and its own talker as local" \
  "^subscriber +listener@$host +[0-9]+ +remote" topic info disc/t
check A "A's own talker stays local" "^publisher +talker +[0-9]+ +[0-9a-f]{16} " topic info disc/t
check B "B's topic echo receives from a topic whose only publisher is in A" \
  "^#[0-9]+ from [0-9a-f]{16}, [0-9]+ bytes" topic echo disc/only -n 2 --timeout 30
check B "B's topic hz measures it" "^summary \([0-9]+ messages in [0-9.]+ s\): average rate: [0-9.]+ Hz" \
  topic hz disc/only --duration 8
out=$( (site A "$bin/ferry" --discovery 3 topic info disc/t) 2>&1) || true
if grep -Eq "^publisher +talker@" <<<"$out"; then fail "A's own talker is listed as remote too"; sed 's/^/  /' <<<"$out"
else echo "ok: A's own talker is not listed twice"; fi
out=$( (site B "$bin/ferry" --discovery 0 topic list -v --window 0) 2>&1) || true
if grep -q "remote" <<<"$out"; then fail "--discovery 0 still looked beyond the registry"; sed 's/^/  /' <<<"$out"
else echo "ok: --discovery 0 shows this site's registry only"; fi
[ $failures -eq 0 ]
