#!/usr/bin/env bash
# What idle processes cost, and how fast a newcomer connects among them (a benchmark, not a test).
#   tools/bench/idle.sh [build-dir] [counts...]     (default: build, 10 100 500)
# For each count N: starts N idle listeners in one fresh domain (each on its own topic), one
# talker publishing every millisecond, waits until all are registered, then measures
#   - the total CPU (user + system) of the N listeners over 10 s, as % of one core;
#   - 5 times, a new subscriber process to the talker's topic: Node creation and the time from
#     subscribe() to its first message (connect_probe).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
shift || true
counts=${*:-10 100 500}
bin=$build/bin
export FERRY_PLUGIN_PATH=${FERRY_PLUGIN_PATH:-$build/plugins}
export FERRY_LOG_LEVEL=${FERRY_LOG_LEVEL:-error}
window=${IDLE_WINDOW:-10}

cpu_ns() {  # CPU time of the given pids, all their threads, in ns (the scheduler's own
            # account, /proc/PID/task/TID/schedstat: exact, unlike utime/stime in ticks, which
            # sample whoever runs at each 10 ms tick and so misreport processes that run 20 us)
    local total=0 pid f run rest
    for pid in "$@"; do
        for f in /proc/"$pid"/task/*/schedstat; do
            read -r run rest <"$f" 2>/dev/null || continue
            total=$((total + run))
        done
    done
    echo "$total"
}

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
printf "%-6s %-14s %-14s %-22s\n" "N" "idle CPU (%)" "node (ms)" "connect (ms, 5 runs)"
for n in $counts; do
    export FERRY_DOMAIN="idle$$_$n"
    pids=()
    for ((i = 0; i < n; i++)); do
        "$bin/listener" --topic "idle.$i" --count 1 --timeout 3600 >"$logs/listener.$i" 2>&1 &
        pids+=($!)
    done
    "$bin/talker" --topic connect --count 100000000 --rate 1000 >/dev/null 2>&1 &
    talker=$!
    # Wait until every listener and the talker are registered.
    for ((t = 0; t < 600; t++)); do
        have=$("$bin/ferry" topic list --json 2>/dev/null | grep -o '"name"' | wc -l || true)
        [ "$have" -ge $((n + 1)) ] && break
        sleep 0.1
    done
    dead=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || dead=$((dead + 1)); done
    if [ "$dead" -gt 0 ]; then
        echo "idle.sh: $dead of $n listeners ended during start-up; first error:" >&2
        grep -h "error\|fail\|ferry" "$logs"/listener.* | grep -v "^listener: topic" | head -3 >&2
    fi
    # Let start-up settle: each join wakes every discovery thread once, and each process re-syncs
    # once when its first check finds the domain grown (1.4-2 % of a core at 500 in the first
    # 3 s after the last join, measured). IDLE_SETTLE=1 shows that transient.
    sleep "${IDLE_SETTLE:-10}"
    before=$(cpu_ns "${pids[@]}")
    sleep "$window"
    after=$(cpu_ns "${pids[@]}")
    cpu=$(awk -v a="$after" -v b="$before" -v w="$window" 'BEGIN { printf "%.2f", (a - b) / 1e9 / w * 100 }')
    node="" connect=""
    for run in 1 2 3 4 5; do
        out=$("$bin/connect_probe" --topic connect --timeout 10)
        node="$node $(echo "$out" | awk '{print $2}')"
        connect="$connect $(echo "$out" | awk '{print $4}')"
    done
    printf "%-6s %-14s %-14s %-22s\n" "$n" "$cpu" "$(echo $node | awk '{print $3}')" "$connect"
    kill "$talker" "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    "$bin/ferry" clean >/dev/null 2>&1 || true
done
