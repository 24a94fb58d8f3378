#!/usr/bin/env python3
"""The software CPU against its peer, QEMU's TCG, on the same integer loop.

Builds bench/emu/loop32.S (a PVH guest running the emu_bench alu loop as 32-bit code) twice,
with a short and a long iteration count, runs each under qemu-system-x86_64 -accel tcg, and
takes the difference of QEMU's CPU time (all threads, from /proc) when the guest prints DONE:
that removes QEMU's start-up. Then runs emu_bench's identical 32-bit loop in the software CPU.

usage: tcg_compare.py EMU_BENCH [--iterations N] [--emu-iterations N]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def build(tmp, iterations):
    out = os.path.join(tmp, f"loop32-{iterations}.elf")
    subprocess.run(["gcc", "-m64", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none",
                    f"-DITERATIONS={iterations}", "-Wl,-T," + os.path.join(HERE, "..", "guests", "firstbyte.ld"),
                    os.path.join(HERE, "loop32.S"), "-o", out], check=True)
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime


def qemu_run(qemu, elf):
    p = subprocess.Popen([qemu, "-M", "microvm", "-accel", "tcg", "-m", "64M", "-nographic",
                          "-no-reboot", "-kernel", elf], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    buf = b""
    os.set_blocking(p.stdout.fileno(), False)
    deadline = time.time() + 600
    while b"DONE" not in buf:
        if time.time() > deadline or p.poll() is not None:
            p.kill()
            raise RuntimeError(f"qemu: the guest did not finish: {buf[-200:]!r}")
        try:
            chunk = p.stdout.read()
        except BlockingIOError:
            chunk = None
        if chunk:
            buf += chunk
        else:
            time.sleep(0.002)
    t = cpu_seconds(p.pid)
    p.kill()
    p.wait()
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("emu_bench")
    ap.add_argument("--iterations", type=int, default=1_000_000_000, help="loop iterations under TCG")
    ap.add_argument("--emu-iterations", type=int, default=40_000_000, help="loop iterations in the software CPU")
    a = ap.parse_args()
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        print("qemu-system-x86_64 not installed: no peer to compare with", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        short, long_ = build(tmp, 1000), build(tmp, a.iterations)
        t_tcg = qemu_run(qemu, long_) - qemu_run(qemu, short)
    insns = a.iterations * 5
    tcg = insns / t_tcg / 1e6
    out = subprocess.run([a.emu_bench, "--loop32", str(a.emu_iterations)], check=True, capture_output=True, text=True).stdout
    m = re.search(r"([0-9.]+) M guest instructions/s", out)
    emu = float(m.group(1))
    print("| CPU | 32-bit alu loop | vs software CPU |")
    print("| --- | ---: | ---: |")
    print(f"| vmkit software CPU | {emu:.0f} M instr/s | 1.00x |")
    print(f"| QEMU TCG (qemu-system-x86_64 -accel tcg) | {tcg:.0f} M instr/s | {tcg / emu:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
