#!/bin/bash
# Boots one test guest under vmkit (or QEMU for cross-checking) and checks its verdict line.
# usage: run-guest.sh VMM GUEST NAME [--expect-exit N] [--expect-no-pass] [--timeout S] [--expect-file PATH TEXT] -- VMM-ARGS...
#   VMM is the vmkit binary, or "qemu" to run qemu-system-x86_64 -accel tcg -M pc instead.
set -u

usage() {
    echo "usage: $0 VMM GUEST NAME [--expect-exit N] [--expect-no-pass] [--timeout S] [--expect-file PATH TEXT] -- VMM-ARGS..." >&2
    exit 2
}
[ $# -ge 3 ] || usage
vmm=$1 guest=$2 name=$3
shift 3
expect_exit=0 expect_pass=1 timeout_s=${VMKIT_GUEST_TIMEOUT:-30}
# --expect-file PATH TEXT: PATH (removed before the run) must contain TEXT afterwards, e.g. what
# the guest wrote to a host-side -chardev file.
expect_file= expect_file_text=
# --send-unix PATH TEXT: once the VMM listens on the unix socket PATH (a -chardev socket server),
# connect and send TEXT, then keep the connection open until the VMM closes it.
send_path= send_text=
while [ $# -gt 0 ]; do
    case $1 in
    --expect-exit) expect_exit=$2; shift 2 ;;
    --expect-no-pass) expect_pass=0; shift ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --expect-file) expect_file=$2 expect_file_text=$3; shift 3 ;;
    --send-unix) send_path=$2 send_text=$3; shift 3 ;;
    --) shift; break ;;
    *) usage ;;
    esac
done

if [ ! -f "$guest" ]; then
    echo "FAIL: guest image $guest does not exist (build it with ninja first)"
    exit 1
fi

if [ "$vmm" = qemu ]; then
    qemu=$(command -v qemu-system-x86_64) || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
    machine=(-M pc)
    for a in "$@"; do
        case $a in -M|-machine) machine=() ;; esac
    done
    cmd=("$qemu" -accel tcg "${machine[@]}" -nographic -kernel "$guest" "$@")
else
    # Under the software CPU no /dev/kvm is needed; that is where it matters most.
    needs_kvm=1
    prev=
    for a in "$@"; do
        [ "$prev" = -accel ] && case $a in emu*|tcg*) needs_kvm=0 ;; esac
        prev=$a
    done
    # Opening the device for read and write is what vmkit needs; permissions alone can lie.
    if [ $needs_kvm = 1 ] && { [ ! -c /dev/kvm ] || ! (exec 3<>/dev/kvm) 2>/dev/null; }; then
        echo "SKIP: /dev/kvm not available"
        exit 77
    fi
    if [ ! -x "$vmm" ]; then
        echo "FAIL: VMM $vmm is not an executable"
        exit 1
    fi
    cmd=("$vmm" run -nographic -kernel "$guest" "$@")
fi

[ -n "$expect_file" ] && rm -f "$expect_file"
if [ -n "$send_path" ]; then
    rm -f "$send_path"
    python3 - "$send_path" "$send_text" <<'PY' &
import os, socket, sys, time
path, text = sys.argv[1], sys.argv[2]
for _ in range(400):
    if os.path.exists(path):
        break
    time.sleep(0.025)
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
try:
    s.connect(path)
    s.sendall(text.encode())
    while s.recv(4096):
        pass
except OSError:
    pass
PY
fi
log=$(mktemp "${TMPDIR:-/tmp}/vmkit-guest-$name.XXXXXX")
trap 'rm -f "$log"' EXIT
SECONDS=0
timeout -k 5 "$timeout_s" "${cmd[@]}" </dev/null >"$log" 2>&1
status=$?
elapsed=$SECONDS

fail() {
    echo "FAIL: $name: $*"
    echo "command: ${cmd[*]}"
    echo "----- output -----"
    tr -d '\r' <"$log"
    echo "------------------"
    exit 1
}

if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    fail "timed out after ${timeout_s}s"
fi
if grep -a -q "VMKIT-TEST: FAIL" "$log"; then
    fail "the guest reported a failure"
fi
if [ "$status" -ne "$expect_exit" ]; then
    fail "exit status $status, expected $expect_exit"
fi
if [ $expect_pass -eq 1 ]; then
    grep -a -q "VMKIT-TEST: PASS $name\b" "$log" || fail "no 'VMKIT-TEST: PASS $name' line"
else
    grep -a -q "VMKIT-TEST: PASS" "$log" && fail "the guest printed PASS but must not have"
fi
if [ -n "$expect_file" ]; then
    grep -a -q -F -- "$expect_file_text" "$expect_file" 2>/dev/null ||
        fail "$expect_file does not contain '$expect_file_text'"
fi
tr -d '\r' <"$log"
echo "ok: $name (exit $status, ${elapsed}s)"
exit 0
