#!/bin/bash
# A stock Linux under the software CPU: Debian's own kernel package and busybox-static (fetched
# with apt-get download, cached) boot with -accel emu -smp 2 to a shell that loads Debian's
# virtio modules and uses every device: virtio-blk (reads the host's marker, writes one back),
# virtio-rng, virtio-console, virtio-net over user-mode networking (DHCP, then HTTP from a
# server on the host). Floating point in user space (awk) too. See docs/emu.md.
# With "repeat", instead: boots it twice with the RTC on the virtual clock from a fixed date
# and requires the two console logs, kernel timestamps included, to be identical.
# usage: run-linux.sh VMKIT CACHE_DIR [repeat]
set -u
vmkit=$1 cache=$2 mode=${3:-devices}
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

tmp=$(mktemp -d)
http_pid=
trap '[ -n "$http_pid" ] && kill $http_pid 2>/dev/null; rm -rf "$tmp"' EXIT
"$here/prepare.sh" "$cache" "$tmp"
status=$?
[ $status -eq 0 ] || exit $status
kernel=$tmp/vmlinuz version=$(cat "$tmp/version")

if [ "$mode" = repeat ]; then
    for run in 1 2; do
        timeout 900 "$vmkit" run -accel emu -smp 2 -m 512M -nographic -no-reboot \
            -kernel "$kernel" -initrd "$tmp/initrd" -rtc base=2024-02-29T12:00:00,clock=vm \
            -append "console=ttyS0 panic=-1 loglevel=8 vmkit_repeat" >"$tmp/run$run" 2>&1
        status=$?
        [ $status -eq 0 ] || { tail -20 "$tmp/run$run"; fail "run $run: vmkit exited with $status"; }
        grep -q '^LINUX-CHECK done 1' "$tmp/run$run" || { tail -20 "$tmp/run$run"; fail "run $run did not finish"; }
    done
    grep '^LINUX-CHECK' "$tmp/run1"
    grep -q '^LINUX-CHECK date 2024-02-29T12:00:0' "$tmp/run1" || fail "the RTC did not start at -rtc base="
    cmp -s "$tmp/run1" "$tmp/run2" || { diff "$tmp/run1" "$tmp/run2" | head -20; fail "the two boots differ"; }
    echo "PASS: two boots of Linux $version under emu -smp 2 printed identical logs ($(wc -l <"$tmp/run1") lines)"
    exit 0
fi

# --- Host side: a disk with a marker, an HTTP server for the guest to fetch from ---
printf 'vmkit-disk-mark!' >"$tmp/disk.img" && truncate -s 1M "$tmp/disk.img"
mkdir "$tmp/www" && echo "hello-over-virtio-net" >"$tmp/www/hello.txt"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$tmp/www" "$port" >/dev/null 2>&1 &
http_pid=$!

start=$(date +%s)
timeout 900 "$vmkit" run -accel emu -smp 2 -m 512M -nographic -no-reboot \
    -kernel "$kernel" -initrd "$tmp/initrd" -append "console=ttyS0 panic=-1 loglevel=${VMKIT_LINUX_LOGLEVEL:-4} http_port=$port" \
    -drive file="$tmp/disk.img",if=virtio,format=raw -device virtio-rng-pci \
    -device virtio-serial-pci -chardev file,id=c0,path="$tmp/hvc.txt" -device virtconsole,chardev=c0 \
    -nic user,model=virtio-net-pci >"$tmp/out" 2>&1
status=$?
echo "Linux $version under -accel emu -smp 2: $(( $(date +%s) - start )) s, exit $status"
grep '^LINUX-CHECK' "$tmp/out"
[ $status -eq 0 ] || { tail -40 "$tmp/out"; fail "vmkit exited with $status"; }

val() { sed -n "s/^LINUX-CHECK $1 //p" "$tmp/out" | tr -d '\r' | head -1; }
expect() { [ "$(val "$1")" = "$2" ] || { tail -40 "$tmp/out"; fail "$1: got '$(val "$1")', expected '$2'"; }; }
expect done 1
expect kernel "$version"
expect cpus 2
expect sum 500500
expect float 3.143
grep -q '^LINUX-CHECK modprobe-failed' "$tmp/out" && fail "the virtio modules did not load"
expect disk-marker vmkit-disk-mark!
expect disk-write 0
[ "$(dd if="$tmp/disk.img" bs=1 skip=4096 count=16 2>/dev/null)" = written-by-linux ] ||
    fail "the guest's write did not reach the disk image"
expect rng virtio_rng.0
expect rng-bytes 32
expect hvc 0
grep -q hello-from-hvc0 "$tmp/hvc.txt" 2>/dev/null || fail "nothing from hvc0 reached the chardev file"
case $(val ip) in 10.0.2.*) ;; *) fail "ip: no DHCP lease from user-mode networking: '$(val ip)'" ;; esac
expect http hello-over-virtio-net
echo "PASS: Linux $version booted under emu and drove virtio-blk, -rng, -console and -net"
