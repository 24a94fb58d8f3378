#!/bin/busybox sh
# /init of the test initramfs: loads the virtio drivers, exercises every device the VM has and
# prints one "LINUX-CHECK name value" line per check for run-linux.sh, then powers off.
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /tmp
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
check() { echo "LINUX-CHECK $1 $2"; }
check kernel "$($bb uname -r)"
check cpus "$($bb grep -c ^processor /proc/cpuinfo)"
check float "$($bb awk 'BEGIN { printf "%.3f", 22 / 7 }')"
check sum "$($bb seq 1 1000 | $bb awk '{ s += $1 } END { print s }')"
check date "$($bb date -u +%Y-%m-%dT%H:%M:%S)"
# The reproducibility run stops here: no devices fed from outside, whose timing varies.
if $bb grep -q vmkit_repeat /proc/cmdline; then
    check done 1
    $bb poweroff -f
fi
$bb depmod
$bb modprobe -a virtio_pci virtio_blk virtio_net virtio_console virtio-rng ||
    { check modprobe-failed 1; $bb dmesg | $bb tail -5; }
$bb sleep 1
# virtio-blk: the host wrote a marker at the start; write one back at 4 KiB.
check disk-marker "$($bb dd if=/dev/vda bs=16 count=1 2>/dev/null)"
echo "written-by-linux" | $bb dd of=/dev/vda bs=4096 seek=1 conv=fsync 2>/dev/null
check disk-write $?
# virtio-rng
check rng "$($bb cat /sys/class/misc/hw_random/rng_current)"
check rng-bytes "$($bb dd if=/dev/hwrng bs=32 count=1 2>/dev/null | $bb wc -c)"
# virtio-console: a line to the host through hvc0
echo "hello-from-hvc0" >/dev/hvc0
check hvc $?
# virtio-net over user-mode networking: DHCP, then HTTP from the host through 10.0.2.2
$bb ip link set lo up
$bb ip link set eth0 up
$bb udhcpc -i eth0 -n -q -t 5 -s /bin/udhcpc.sh >/dev/null 2>&1
check ip "$($bb ip -4 addr show eth0 | $bb awk '/inet / { print $2 }')"
port=$($bb sed -n 's/.*http_port=\([0-9]*\).*/\1/p' /proc/cmdline)
check http "$($bb wget -q -O - http://10.0.2.2:$port/hello.txt)"
check done 1
$bb poweroff -f
