# Sourced by the dds namespace tests (bash; the caller defines skip()): joins two new network
# namespaces $1 and $2 by a veth pair $3 <-> $4 with the addresses $5.1 and $5.2 (/24; use the
# RFC 2544 range 198.18.0.0/15, which exists only inside them). The caller removes the
# namespaces (and with them the pair) in its EXIT trap, with stop_children_and_namespaces.
join_by_veth() {
  local a=$1 b=$2 va=$3 vb=$4 net=$5
  ip netns add "$a" 2>/dev/null || skip "cannot create a network namespace here (no CAP_SYS_ADMIN?)"
  ip netns add "$b"
  ip link add "$va" type veth peer name "$vb"
  ip link set "$va" netns "$a"
  ip link set "$vb" netns "$b"
  ip -n "$a" addr add "$net.1/24" dev "$va"
  ip -n "$b" addr add "$net.2/24" dev "$vb"
  for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
  ip -n "$a" link set "$va" up
  ip -n "$b" link set "$vb" up
}

# The common part of the callers' EXIT traps: SIGKILLs and reaps the processes in the array
# `children`, then (in netns mode: $mode unset or "netns") deletes the namespaces $1 and $2.
stop_children_and_namespaces() {
  for p in "${children[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${children[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${mode:-netns}" = netns ]; then
    ip netns del "$1" 2>/dev/null || true
    ip netns del "$2" 2>/dev/null || true
  fi
}
