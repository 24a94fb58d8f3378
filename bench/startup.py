#!/usr/bin/env python3
"""Start-up latency and memory overhead: vmkit against QEMU (-M microvm and -M pc) booting the
same PVH guest, in one run, reported as ratios.

  latency  = time from exec to the first byte the guest writes to its serial port
  overhead = RSS of the VMM process minus the guest RAM the guest touched (the resident part
             of the guest-RAM mapping), read once the guest has printed its verdict

usage: startup.py VMKIT GUEST [--runs N] [--markdown]
"""
import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import time

RAM_MIB = 256
DONE = b"VMKIT-TEST: PASS"


def smaps_overhead_kib(pid):
    """Total RSS minus the RSS of the largest mapping (the guest RAM block)."""
    total, largest_rss, largest_size = 0, 0, 0
    size = rss = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                total += rss
                if size > largest_size:
                    largest_size, largest_rss = size, rss
    assert largest_size >= RAM_MIB * 1024, "guest RAM mapping not found"
    return total - largest_rss


def one_run(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    fd = p.stdout.fileno()
    first = None
    buf = b""
    deadline = time.time() + 120
    while DONE not in buf and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if first is None:
                first = time.perf_counter() - t0
            buf += chunk
    if DONE not in buf:
        p.kill()
        raise RuntimeError(f"{cmd[0]}: guest did not finish: {buf[-300:]!r}")
    overhead = smaps_overhead_kib(p.pid)
    p.kill()
    p.wait()
    return first, overhead


def measure(name, cmd, runs):
    lat, mem = [], []
    for _ in range(runs):
        a, b = one_run(cmd)
        lat.append(a)
        mem.append(b)
    return {"name": name, "latency_ms": statistics.median(lat) * 1000,
            "overhead_mib": statistics.median(mem) / 1024}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vmkit")
    ap.add_argument("guest")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    qemu = shutil.which("qemu-system-x86_64")
    # -no-shutdown keeps vmkit alive after the guest's power-off so its memory can be read.
    rows = [measure("vmkit", [a.vmkit, "run", "-m", f"{RAM_MIB}M", "-nographic", "-no-shutdown",
                              "-kernel", a.guest], a.runs)]
    if qemu:
        common = ["-accel", "kvm", "-m", f"{RAM_MIB}M", "-nographic", "-no-shutdown",
                  "-kernel", a.guest]
        rows.append(measure("qemu -M microvm", [qemu, "-M", "microvm"] + common, a.runs))
        rows.append(measure("qemu -M pc", [qemu, "-M", "pc"] + common, a.runs))
    else:
        print("qemu-system-x86_64 not installed: no peer to compare with", file=sys.stderr)
    base = rows[0]
    if a.markdown:
        print("| VMM | exec to first serial byte | VMM memory overhead | latency vs vmkit | "
              "overhead vs vmkit |")
        print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        lr = r["latency_ms"] / base["latency_ms"]
        mr = r["overhead_mib"] / base["overhead_mib"]
        if a.markdown:
            print(f'| {r["name"]} | {r["latency_ms"]:.1f} ms | {r["overhead_mib"]:.1f} MiB | '
                  f'{lr:.1f}x | {mr:.1f}x |')
        else:
            print(f'{r["name"]:16} first byte {r["latency_ms"]:8.1f} ms ({lr:5.1f}x vmkit)   '
                  f'overhead {r["overhead_mib"]:6.1f} MiB ({mr:5.1f}x vmkit)')


if __name__ == "__main__":
    main()
