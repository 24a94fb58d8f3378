#!/bin/sh
# Makes a network namespace with a bridge and TAPs for VM-level network tests (needs root).
#   mkns.sh NS BRIDGE CIDR TAP...   e.g. mkns.sh vt0 br0 10.50.0.1/24 tap0 tap1
#   mkns.sh -d NS                   removes the namespace (and everything in it)
# Then: ip netns exec NS vmkit run ... -netdev tap,id=n0,ifname=tap0,script=no,downscript=no
# Exits 77 with "SKIP: ..." when it cannot (not root, no netns support), as tests do.
set -e
if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root"; exit 77; fi
if [ "$1" = "-d" ]; then
    for pid in $(ip netns pids "$2" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    ip netns del "$2"
    exit 0
fi
[ $# -ge 3 ] || { echo "usage: $0 NS BRIDGE CIDR [TAP...] | $0 -d NS" >&2; exit 2; }
ns=$1 br=$2 cidr=$3
shift 3
VMKIT=${VMKIT:-vmkit}
ip netns add "$ns" 2>/dev/null || { echo "SKIP: cannot create network namespace $ns"; exit 77; }
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" "$VMKIT" net bridge add "$br"
ip netns exec "$ns" "$VMKIT" net bridge addr "$br" "$cidr"
ip netns exec "$ns" ip link set "$br" up
for tap in "$@"; do
    ip netns exec "$ns" "$VMKIT" net tap add "$tap"
    ip netns exec "$ns" "$VMKIT" net bridge addif "$br" "$tap"
    ip netns exec "$ns" ip link set "$tap" up
done
