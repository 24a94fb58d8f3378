#!/usr/bin/env python3
"""Wall time of each test guest under vmkit -accel emu, vmkit -accel kvm and QEMU TCG, in one run.

Each guest boots, runs its checks and powers off; a run counts only if the guest printed its
"VMKIT-TEST: PASS" line. The median of --runs runs is reported, with the ratios to emu.

usage: guests_bench.py BUILD_DIR [--runs N] [--only NAME,...]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

# name: (guest, vmkit args, QEMU args); QEMU's "pc" lacks what acpi and pci check (see
# tests/guests/run/meson.build), so those use q35 there.
SCENARIOS = {
    "hello": ("hello", ["-m", "256M", "-smp", "2"], None),
    "cmdline_memmap": ("cmdline_memmap", ["-m", "256M", "-append", "expect_mem=256 marker=hello-world-123"], None),
    "smp-4": ("smp", ["-m", "256M", "-smp", "4", "-append", "expect_cpus=4"], None),
    "acpi": ("acpi", ["-m", "256M", "-smp", "2", "-append", "expect_cpus=2"],
             ["-M", "q35", "-m", "256M", "-smp", "2", "-append", "expect_cpus=2 allow_rsdt"]),
    "pci": ("pci", ["-m", "256M", "-device", "pci-testdev"], ["-M", "q35", "-m", "256M", "-device", "pci-testdev"]),
    "reset-cf9": ("reset", ["-m", "256M", "-append", "method=cf9"], None),
    "interrupts": ("interrupts", ["-m", "256M"], None),
    "virtio_rng": ("virtio_rng", ["-m", "256M", "-device", "virtio-rng-pci"],
                   ["-m", "256M", "-device", "virtio-rng-pci,disable-legacy=on"]),
}


def run_once(cmd, name, timeout=120):
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{' '.join(cmd)}: timed out", file=sys.stderr)
        return None
    dt = time.monotonic() - t
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    if f"VMKIT-TEST: PASS {name}" not in out:
        print(f"{' '.join(cmd)}: no PASS line (exit {p.returncode}):\n{out[-2000:]}", file=sys.stderr)
        return None
    return dt


def median(cmd, name, runs):
    times = []
    for _ in range(runs):
        t = run_once(cmd, name)
        if t is None:
            return None
        times.append(t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    vmkit = os.path.join(a.build, "src", "cli", "vmkit")
    guests = os.path.join(a.build, "tests", "guests")
    qemu = shutil.which("qemu-system-x86_64")
    only = set(a.only.split(",")) if a.only else None
    print("| guest | emu | kvm (this host) | QEMU TCG | kvm / emu | TCG / emu |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for sname, (guest, args, qargs) in SCENARIOS.items():
        if only and sname not in only:
            continue
        elf = os.path.join(guests, guest + ".elf")
        base = [vmkit, "run", "-nographic", "-kernel", elf] + args
        emu = median(base + ["-accel", "emu"], guest, a.runs)
        kvm = median(base + ["-accel", "kvm"], guest, a.runs)
        tcg = None
        if qemu:
            qa = qargs if qargs is not None else ["-M", "pc"] + args
            tcg = median([qemu, "-accel", "tcg", "-nographic", "-kernel", elf] + qa, guest, a.runs)
        f = lambda t: "failed" if t is None else f"{t:.3f} s"
        r = lambda t: "" if t is None or not emu else f"{t / emu:.1f}x"
        print(f"| {sname} | {f(emu)} | {f(kvm)} | {f(tcg)} | {r(kvm)} | {r(tcg)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
