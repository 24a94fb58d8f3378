#!/usr/bin/env python3
"""virtio-blk throughput: the same ring-3 guest (tests/guests/virtio_blk_bench.c) on the same
raw image under vmkit and under QEMU (-accel kvm -M pc), in one invocation; prints IOPS and
MiB/s per workload and vmkit/QEMU ratios, and with --doc writes the table into the "virtio-blk"
section of docs/benchmarks.md.

usage: run.py VMKIT GUEST_ELF [--secs N] [--runs N] [--doc docs/benchmarks.md]"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

IMG_MIB = 256
WORKLOADS = ["randread-4k-qd1", "randread-4k-qd32", "randwrite-4k-qd1", "randwrite-4k-qd32",
             "seqread-1m-qd4", "seqwrite-1m-qd4"]
DRIVE = "format=raw,cache=writeback,aio=io_uring"


def vmm_cmd(kind, vmkit, guest, img, secs):
    common = ["-m", "256M", "-nographic", "-no-reboot", "-kernel", guest,
              "-drive", f"file={img},if=none,id=d0,{DRIVE}", "-append", f"secs={secs}"]
    if kind == "vmkit":
        return [vmkit, "run"] + common + ["-device", "virtio-blk-pci,drive=d0,num-queues=1"]
    # QEMU's virtio-blk-pci is transitional by default; the guest drives the modern device.
    return ["qemu-system-x86_64", "-accel", "kvm", "-M", "pc", "-net", "none"] + common + [
        "-device", "virtio-blk-pci,drive=d0,num-queues=1,disable-legacy=on"]


def run_once(kind, vmkit, guest, tmp, secs):
    img = os.path.join(tmp, f"{kind}.img")
    # Same content for both: every block allocated, so reads hit the file, not holes.
    with open(img, "wb") as f:
        chunk = bytes(range(256)) * 4096
        for _ in range(IMG_MIB):
            f.write(chunk)
    os.sync()  # start each run with no dirty pages from the previous one
    cmd = vmm_cmd(kind, vmkit, guest, img, secs)
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120 + 10 * secs)
    # The guest writes its results to sector 0 (it cannot reach the serial port from ring 3).
    with open(img, "rb") as f:
        text = f.read(4096).split(b"\0")[0].decode("ascii", "replace")
    os.unlink(img)
    res = {}
    for m in re.finditer(r"BENCH (\S+) ops=(\d+) us=(\d+) iops=(\d+) kibps=(\d+) errors=(\d+) "
                         r"guest_own_permille=(\d+)", text):
        name, ops, us, iops, kibps, errors, own = m.groups()
        if int(errors):
            sys.exit(f"{kind}: {name}: {errors} requests failed")
        res[name] = {"iops": int(iops), "mibps": int(kibps) / 1024, "own": int(own) / 10}
    if set(res) != set(WORKLOADS):
        out = p.stdout.decode(errors="replace")[-2000:]
        sys.exit(f"{kind}: no complete results (exit {p.returncode}); command: {' '.join(cmd)}\n{out}")
    return res


def best(runs):
    """Per workload, the run with the most IOPS (the host is shared and noisy)."""
    return {w: max((r[w] for r in runs), key=lambda x: x["iops"]) for w in WORKLOADS}


def table(v, q):
    lines = ["| workload | vmkit IOPS | QEMU IOPS | vmkit MiB/s | QEMU MiB/s | vmkit / QEMU | "
             "guest's own time (vmkit, QEMU) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in WORKLOADS:
        a, b = v[w], q[w]
        ratio = a["iops"] / b["iops"] if b["iops"] else float("inf")
        lines.append(f"| {w} | {a['iops']:,} | {b['iops']:,} | {a['mibps']:,.1f} | "
                     f"{b['mibps']:,.1f} | {ratio:.2f}x | {a['own']:.1f}%, {b['own']:.1f}% |")
    return "\n".join(lines)


SECTION_HEAD = "## virtio-blk"


def write_doc(path, tbl, secs, runs, load):
    body = f"""{SECTION_HEAD}

`bench/virtio-blk/run.py VMKIT GUEST --secs {secs} --runs {runs}` (`GUEST` is
`build/tests/guests/virtio_blk_bench.elf`): one guest, one {IMG_MIB} MiB raw image (all blocks
allocated) with `-drive ...,{DRIVE}` and `-device virtio-blk-pci,num-queues=1`, under vmkit and
under `qemu-system-x86_64 -accel kvm -M pc` (`disable-legacy=on`, so both are modern virtio-pci).
Each workload runs {secs} s; the best of {runs} runs per VMM (the host is shared; the
order alternates and the host page cache is synced before each run). The guest
sets the device up in ring 0, then runs the loop in ring 3, natively on this PVM host: it
keeps the queue full, polls the used ring (no interrupts) and kicks through the MMIO notify
register. "Guest's own time" is the share of the run the guest spent in its own code between
seeing a completion and posting the next request (rdtsc around it): well under 2%, so the
figures measure the VMM's virtio-blk path, KVM's MMIO exits and the host's page cache.

{tbl}

The guest and its image are the same for both; the runs use the host page cache
(`cache=writeback`), so they compare the VMMs' request paths rather than the disk. The host
is a 2-core machine shared with other jobs (load average {load} during this run): figures
move by up to 2x between invocations, QD1 and the 1 MiB workloads the most, so read ratios
within about 1.5x of 1 as "the same".

Notes from building it:
- The guest negotiates `VIRTIO_BLK_F_FLUSH`, as every real driver does. Without it QEMU (and
  now vmkit, following the spec) writes through, one fdatasync per write.
- vmkit reaps the block layer's completions right after submitting a queue's requests;
  page-cache hits complete inside `io_uring_submit`, so QD1 reads no longer wait for another
  event-loop wake-up (about 2x IOPS at QD1).
- On this PVM host, under vmkit, ring 3 does not get the IOPL the guest sets with `iretq`
  (port I/O faults) and `int $0x80` from ring 3 triple-faults; under QEMU both work. So the
  guest does no port I/O in ring 3 and hands its results back through sector 0 of the disk.
"""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find(SECTION_HEAD + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(SECTION_HEAD))
        text = text[:start] + body + (text[nxt + 1:] if nxt >= 0 else "")
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vmkit")
    ap.add_argument("guest")
    ap.add_argument("--secs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--doc")
    a = ap.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        print("SKIP: qemu-system-x86_64 not installed")
        return 77
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm not available")
        return 77
    with tempfile.TemporaryDirectory(prefix="vmkit-bench-blk.") as tmp:
        vr, qr = [], []
        for i in range(a.runs):
            # alternate who goes first, so neither always inherits the other's page cache state
            for kind in (("vmkit", "qemu") if i % 2 == 0 else ("qemu", "vmkit")):
                (vr if kind == "vmkit" else qr).append(
                    run_once(kind, a.vmkit, a.guest, tmp, a.secs))
    tbl = table(best(vr), best(qr))
    load = open("/proc/loadavg").read().split()[0]
    print(tbl)
    if a.doc:
        write_doc(a.doc, tbl, a.secs, a.runs, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
