#!/bin/bash
# The emu accelerator's virtual clock (docs/emu.md): the vclock guest's timings and vCPU
# interleaving repeat exactly from run to run (and the RTC, with -rtc clock=vm), -icount shift=N scales the clock by 2^N, idle
# time is skipped (100 s of guest sleep in a few seconds) unless -icount sleep=on, where it
# passes in host time.
# usage: run-vclock.sh VMKIT GUEST
set -u
vmkit=$1 guest=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# run NAME ARGS...: boots the guest, keeps its "vclock:" lines in $tmp/NAME.
run() {
    local name=$1
    shift
    timeout 60 "$vmkit" run -kernel "$guest" -m 256M -accel emu -nographic -no-reboot "$@" \
        >"$tmp/$name.out" 2>&1
    grep -q "VMKIT-TEST: PASS vclock" "$tmp/$name.out" || { cat "$tmp/$name.out"; fail "$name: the guest did not pass"; }
    grep '^vclock:' "$tmp/$name.out" >"$tmp/$name"
    sed 's/^/  '"$name"': /' "$tmp/$name"
}
work_ns() { sed -n 's/^vclock: work \([0-9]*\) ns.*/\1/p' "$tmp/$1"; }

start=$(date +%s)
rtc=(-rtc base=2020-01-01T00:00:00,clock=vm)
run a -smp 2 "${rtc[@]}"
run b -smp 2 "${rtc[@]}"
cmp -s "$tmp/a" "$tmp/b" || { diff "$tmp/a" "$tmp/b"; fail "two runs of the same guest differ"; }
grep -q "2 cpus" "$tmp/a" || fail "the second vCPU did not join"
# The RTC on the same clock: the base plus the 100 s the guest slept (and a moment more).
grep -q "rtc 2020-01-01 00:01:40" "$tmp/a" || fail "-rtc base=2020-01-01T00:00:00,clock=vm: the RTC did not read 00:01:40 after 100 s"
[ $(( $(date +%s) - start )) -lt 60 ] || fail "100 s of guest idle time took a minute: it was not skipped"

run shift2 -smp 2 -icount shift=2
w0=$(work_ns a) w2=$(work_ns shift2)
[ -n "$w0" ] && [ "$w2" = $((w0 * 4)) ] || fail "-icount shift=2: fixed work took $w2 ns, expected 4 x $w0"

start=$(date +%s%N)
run sleep -icount sleep=on -append sleep_ms=1500
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed_ms" -ge 1500 ] || fail "-icount sleep=on: a 1.5 s guest sleep passed in $elapsed_ms ms of host time"
echo "PASS: runs repeat exactly; shift=2 scales the clock by 4; sleep=on idles in host time ($elapsed_ms ms)"
