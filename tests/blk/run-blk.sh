#!/bin/bash
# virtio-blk scenarios: prepare an image with known content, boot the virtio_blk guest on it
# with the scenario's -drive/-device options, then check the image from the host side.
# usage: run-blk.sh SCENARIO VMKIT GUEST_ELF RUN_GUEST_SH
set -u
scenario=$1 vmkit=$2 guest=$3 run_guest=$4
here=$(cd "$(dirname "$0")" && pwd)
img_py=("python3" "$here/blkimg.py")
SECTORS=2048 # 1 MiB

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-blk-$scenario.XXXXXX")
bg_pid=
cleanup() {
    [ -n "$bg_pid" ] && kill "$bg_pid" 2>/dev/null && wait "$bg_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
img=$tmp/disk.img

fail() { echo "FAIL: blk-$scenario: $*"; exit 1; }
qemu_img() {
    command -v qemu-img >/dev/null || { echo "SKIP: qemu-img not installed"; exit 77; }
    qemu-img "$@" >/dev/null || fail "qemu-img $* failed"
}
# Boot the guest; extra args after --. Output goes to $tmp/out.
boot() {
    local expect=()
    while [ "$1" != -- ]; do expect+=("$1"); shift; done
    shift
    "$run_guest" "$vmkit" "$guest" virtio_blk "${expect[@]}" -- -m 64M "$@" >"$tmp/out" 2>&1
    local st=$?
    [ $st -eq 77 ] && { cat "$tmp/out"; exit 77; }
    cat "$tmp/out"
    return $st
}
# Run vmkit directly and expect it to refuse to start with msg.
refuses() {
    local msg=$1
    shift
    if [ ! -c /dev/kvm ] || ! (exec 3<>/dev/kvm) 2>/dev/null; then
        echo "SKIP: /dev/kvm not available"
        exit 77
    fi
    timeout 20 "$vmkit" run -nographic -m 64M -kernel "$guest" "$@" </dev/null >"$tmp/out" 2>&1
    local st=$?
    cat "$tmp/out"
    [ $st -ne 0 ] || fail "vmkit started with $*; expected a refusal"
    grep -q -F -- "$msg" "$tmp/out" || fail "expected '$msg' in the error"
}
check() { "${img_py[@]}" check "$@" || fail "image check failed"; }
sha() { "${img_py[@]}" sha "$@" | cut -d' ' -f1 | tr '\n' ' '; }

"${img_py[@]}" create "$img" $SECTORS
case $scenario in
rw-raw)
    boot -- -drive file="$img",if=virtio,format=raw -append "mode=rw sectors=$SECTORS wce=1" || fail "guest failed"
    check "$img" guest=16-23,100
    ;;
rw-cache-*)
    mode=${scenario#rw-cache-}
    wce=1
    case $mode in writethrough | directsync) wce=0 ;; esac
    boot -- -drive file="$img",if=virtio,format=raw,cache=$mode \
        -append "mode=rw sectors=$SECTORS wce=$wce" || fail "guest failed"
    check "$img" guest=16-23,100
    ;;
wce)
    boot -- -drive file="$img",if=virtio,format=raw -append "mode=wce sectors=$SECTORS" || fail "guest failed"
    check "$img" guest=16-23,100
    ;;
rw-qcow2)
    qemu_img convert -f raw -O qcow2 "$img" "$tmp/disk.qcow2"
    boot -- -drive file="$tmp/disk.qcow2",if=none,id=d0,format=qcow2 -device virtio-blk-pci,drive=d0 \
        -append "mode=rw sectors=$SECTORS" || fail "guest failed"
    qemu-img check "$tmp/disk.qcow2" || fail "qemu-img check found problems"
    qemu_img convert -f qcow2 -O raw "$tmp/disk.qcow2" "$tmp/back.raw"
    check "$tmp/back.raw" guest=16-23,100
    ;;
probed)
    # No format=: QEMU's warning, and a guest write that would turn sector 0 into a qcow2
    # header is refused (the guest checks IOERR) while ordinary writes to it pass.
    boot -- -drive file="$img",if=virtio -append "mode=guard sectors=$SECTORS" || fail "guest failed"
    grep -q -F "Image format was not specified for '$img' and probing guessed raw. Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted. Specify the 'raw' format explicitly to remove the restrictions." "$tmp/out" ||
        fail "QEMU's probing warning missing"
    check "$img" guest=0
    ;;
many)
    boot -- -drive file="$img",if=virtio,format=raw,aio=io_uring -append "mode=many sectors=$SECTORS" || fail "guest failed"
    check "$img" guest=200-455
    ;;
emu-many)
    # The software CPU, whose slices wait for in-flight requests (docs/emu.md), 32 in flight.
    boot -- -drive file="$img",if=virtio,format=raw -accel emu -append "mode=many sectors=$SECTORS" || fail "guest failed"
    check "$img" guest=200-455
    ;;
emu-rw-qcow2)
    qemu_img convert -f raw -O qcow2 "$img" "$tmp/disk.qcow2"
    boot -- -drive file="$tmp/disk.qcow2",if=virtio,format=qcow2 -accel emu,thread=multi \
        -append "mode=rw sectors=$SECTORS" || fail "guest failed"
    qemu-img check "$tmp/disk.qcow2" || fail "qemu-img check found problems"
    qemu_img convert -f qcow2 -O raw "$tmp/disk.qcow2" "$tmp/back.raw"
    check "$tmp/back.raw" guest=16-23,100
    ;;
many-threads)
    boot -- -drive file="$img",if=virtio,format=raw,aio=threads -append "mode=many sectors=$SECTORS" || fail "guest failed"
    check "$img" guest=200-455
    ;;
mq)
    boot -- -smp 2 -drive file="$img",if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0,num-queues=2 \
        -append "mode=many queue=1 queues=2 sectors=$SECTORS" || fail "guest failed"
    check "$img" guest=200-455
    ;;
discard)
    boot -- -drive file="$img",if=virtio,format=raw,discard=unmap -append "mode=discard sectors=$SECTORS" || fail "guest failed"
    check "$img" zero=256-511,600-607,700-715,800-807,900-907
    ;;
readonly)
    before=$(sha "$img")
    boot -- -drive file="$img",if=virtio,format=raw,readonly=on -append "mode=ro ro sectors=$SECTORS" || fail "guest failed"
    [ "$(sha "$img")" = "$before" ] || fail "a read-only image changed"
    ;;
snapshot | snapshot-global)
    qemu_img convert -f raw -O qcow2 "$img" "$tmp/base.qcow2"
    qemu_img create -f qcow2 -b "$tmp/base.qcow2" -F qcow2 "$tmp/overlay.qcow2"
    before=$(sha "$tmp/base.qcow2" "$tmp/overlay.qcow2")
    if [ "$scenario" = snapshot ]; then
        opts=(-drive file="$tmp/overlay.qcow2",if=virtio,format=qcow2,snapshot=on)
    else
        opts=(-snapshot -drive file="$tmp/overlay.qcow2",if=virtio,format=qcow2)
    fi
    boot -- "${opts[@]}" -append "mode=rw sectors=$SECTORS" || fail "guest failed"
    [ "$(sha "$tmp/base.qcow2" "$tmp/overlay.qcow2")" = "$before" ] ||
        fail "snapshot=on: the images changed"
    ;;
getid)
    boot -- -drive file="$img",if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0,serial=vmkit-SN-0042 \
        -append "mode=getid serial=vmkit-SN-0042 sectors=$SECTORS" || fail "guest failed"
    boot -- -drive file="$img",if=virtio,format=raw,serial=drive-serial-123456789 \
        -append "mode=getid serial=drive-serial-1234567 sectors=$SECTORS" || fail "guest failed (drive serial)"
    ;;
hostile)
    before=$(sha "$img")
    boot -- -drive file="$img",if=virtio,format=raw -append "mode=hostile sectors=$SECTORS" || fail "guest failed"
    [ "$(sha "$img")" = "$before" ] || fail "the hostile guest changed the image"
    ;;
blocksize)
    boot -- -drive file="$img",if=none,id=d0,format=raw \
        -device virtio-blk-pci,drive=d0,logical_block_size=4096,physical_block_size=4096 \
        -append "mode=rw4k blk_size=4096 sectors=$SECTORS" || fail "guest failed"
    check "$img" guest=16-23
    ;;
errors)
    refuses "Could not open '$tmp/missing.img'" -drive file="$tmp/missing.img",if=virtio,format=raw
    refuses "Could not open '$tmp/missing.img'" -drive file="$tmp/missing.img",if=virtio
    refuses "$img" -drive file="$img",if=virtio,format=qcow2
    refuses "QEMU's default interface is IDE" -drive file="$img"
    refuses "-hda is not supported" -hda "$img"
    ;;
lock)
    # vmkit holds the image (the guest halts with the disk open): QEMU's tools must refuse it ...
    if [ ! -c /dev/kvm ] || ! (exec 3<>/dev/kvm) 2>/dev/null; then echo "SKIP: /dev/kvm not available"; exit 77; fi
    command -v qemu-io >/dev/null || { echo "SKIP: qemu-io not installed"; exit 77; }
    "$vmkit" run -nographic -m 64M -kernel "$guest" -drive file="$img",if=virtio,format=raw \
        -append "mode=hold" </dev/null >"$tmp/vm.out" 2>&1 &
    bg_pid=$!
    sleep 1
    kill -0 "$bg_pid" 2>/dev/null || { cat "$tmp/vm.out"; fail "vmkit did not keep running"; }
    qemu-io -f raw -c 'read 0 512' "$img" >"$tmp/qio" 2>&1
    cat "$tmp/qio"
    grep -q 'Failed to get "write" lock' "$tmp/qio" || fail "qemu-io opened an image vmkit has open for writing"
    # ... a second vmkit must refuse it, even read-only ...
    refuses "Is another process using the image" -drive file="$img",if=virtio,format=raw,readonly=on
    kill "$bg_pid"; wait "$bg_pid" 2>/dev/null; bg_pid=
    # ... and vmkit must refuse an image QEMU has open for writing.
    qemu-io -f raw "$img" < <(exec 2>/dev/null; sleep 8) >/dev/null 2>&1 &
    bg_pid=$!
    sleep 1
    refuses "Is another process using the image" -drive file="$img",if=virtio,format=raw
    ;;
qemu-crosscheck)
    # The same guest modes against QEMU's virtio-blk (TCG), as a reference for the guest itself:
    # where QEMU legitimately differs the guest relaxes its checks on "qemu" in the cmdline.
    command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
    qrun() { # drive-opts device-opts append
        "${img_py[@]}" create "$img" $SECTORS
        "$run_guest" qemu "$guest" virtio_blk --timeout 60 -- -m 64M -net none \
            -drive file="$img",if=none,id=d0,format=raw$1 \
            -device virtio-blk-pci,drive=d0,disable-legacy=on,num-queues=1$2 \
            -append "qemu sectors=$SECTORS $3" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "QEMU: $3"; }
    }
    qrun "" "" "mode=rw wce=1"; check "$img" guest=16-23,100
    qrun "" "" "mode=many"; check "$img" guest=200-455
    qrun ",discard=unmap" "" "mode=discard"; check "$img" zero=256-511,600-607,700-715,800-807,900-907
    qrun ",readonly=on" "" "mode=ro ro"
    qrun "" ",serial=vmkit-SN-0042" "mode=getid serial=vmkit-SN-0042"
    qrun "" "" "mode=wce"; check "$img" guest=16-23,100
    qrun "" ",logical_block_size=4096,physical_block_size=4096" "mode=rw4k blk_size=4096"
    qrun "" "" "mode=hostile"
    ;;
*)
    echo "unknown scenario $scenario"
    exit 2
    ;;
esac
echo "PASS: blk-$scenario"
