#!/bin/busybox sh
# udhcpc's hook: configure the lease it got (busybox ships no default script).
bb=/bin/busybox
case $1 in
bound|renew)
    $bb ip addr flush dev "$interface"
    $bb ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && $bb ip route add default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
