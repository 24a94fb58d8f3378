#!/usr/bin/env python3
"""Stock Linux to user space and back under each accelerator, in one run.

Debian's kernel with the tests/linux initramfs (vmkit_repeat: busybox checks incl. floating
point, then power-off), -smp 2 -m 512M, under vmkit -accel emu (vCPUs in turns), -accel
emu,thread=multi and QEMU TCG (-M pc: SeaBIOS, MTTCG). Prints a markdown table: best wall time
of --runs runs, and ratios to QEMU.

usage: linux_boot.py BUILD_DIR [--runs N]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def best(name, cmd, runs):
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=900)
        t = time.monotonic() - t0
        if b"LINUX-CHECK done 1" not in r.stdout:
            sys.exit(f"linux_boot: {name} did not reach the power-off:\n{r.stdout[-800:].decode(errors='replace')}")
        times.append(t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prep = os.path.join(HERE, "..", "..", "tests", "linux", "prepare.sh")
        r = subprocess.run([prep, os.path.join(a.build, "tests", "linux", "cache"), tmp],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"linux_boot: cannot prepare the Debian kernel: {r.stdout}{r.stderr}")
        kernel, initrd = os.path.join(tmp, "vmlinuz"), os.path.join(tmp, "initrd")
        version = open(os.path.join(tmp, "version")).read().strip()
        append = "console=ttyS0 panic=-1 quiet vmkit_repeat"
        common = ["-smp", "2", "-m", "512M", "-nographic", "-no-reboot", "-kernel", kernel,
                  "-initrd", initrd, "-append", append]
        vmkit = [os.path.join(a.build, "src", "cli", "vmkit"), "run"] + common
        rows = [("vmkit -accel emu (thread=single)", best("emu", vmkit + ["-accel", "emu"], a.runs)),
                ("vmkit -accel emu,thread=multi",
                 best("emu-multi", vmkit + ["-accel", "emu,thread=multi"], a.runs))]
        qemu = best("qemu", ["qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-net", "none"] + common,
                    a.runs)
        rows.append(("QEMU 7.2 TCG (-M pc)", qemu))
        print(f"| Linux {version} to user space and power-off, -smp 2 | wall time | ratio to QEMU TCG |")
        print("| --- | ---: | ---: |")
        for name, t in rows:
            print(f"| {name} | {t:.1f} s | {t / qemu:.2f} |")


if __name__ == "__main__":
    main()
