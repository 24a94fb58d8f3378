#!/usr/bin/env python3
"""virtio-net benchmark: guest -> host UDP throughput and UDP round-trip latency over a TAP and
over user-mode networking, vmkit against QEMU (-accel kvm) with the same guest, in one run.
The guest's loops run in ring 3 (natively on PVM hosts); it reports through a RESULT datagram.

usage: netbench.py VMKIT GUEST_ELF [--runs N] [--markdown]
Needs root (it works in a private network namespace it creates). GUEST_ELF is
build/tests/guests/net_bench.elf. Prints a table of medians and vmkit/QEMU ratios.
"""
import argparse
import ctypes
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

CLONE_NEWNET, CLONE_NEWNS = 0x40000000, 0x00020000
PORT = 5555
COUNT, SIZE, RTTS = 20000, 1400, 500


def private_netns():
    if os.geteuid() != 0:
        sys.exit("netbench: needs root (TAP devices in a private network namespace)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        sys.exit(f"netbench: unshare: {os.strerror(ctypes.get_errno())}")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "sysfs", "sysfs", "/sys"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


class HostSide:
    """UDP echo on PORT and a sink on PORT+1 that times the burst and takes the RESULT datagram."""

    def __init__(self, addr):
        self.echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.echo.bind((addr, PORT))
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sink.bind((addr, PORT + 1))
        self.bytes = 0
        self.first = self.last = None
        self.result = None
        self.done = threading.Event()
        self.stop = False
        self.threads = [threading.Thread(target=self._echo, daemon=True),
                        threading.Thread(target=self._sink, daemon=True)]
        for t in self.threads:
            t.start()

    def _echo(self):
        self.echo.settimeout(0.5)
        while not self.stop:
            try:
                d, a = self.echo.recvfrom(2048)
                self.echo.sendto(b"echo:" + d, a)
            except (socket.timeout, OSError):
                pass

    def _sink(self):
        self.sink.settimeout(0.5)
        while not self.stop:
            try:
                d, _ = self.sink.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            now = time.monotonic()
            if d.startswith(b"RESULT "):
                if not self.done.is_set():
                    self.result = dict(kv.split("=") for kv in d.decode().split()[1:])
                    self.done.set()
                continue
            if self.first is None:
                self.first = now
            self.last = now
            self.bytes += len(d)

    def close(self):
        self.stop = True
        for t in self.threads:
            t.join()
        self.echo.close()
        self.sink.close()


def run_vm(vmm, guest, net_args, append, host, tap=None):
    """Boot the guest; it never exits (ring 3 cannot get back), so stop it once its RESULT
    datagram arrived."""
    if vmm[0] == "qemu":
        # Modern-only and no option ROM: the device the guest driver (virtio 1.x) expects.
        net_args = [a + ",disable-legacy=on,romfile=" if a.startswith("virtio-net-pci") else a for a in net_args]
        cmd = ["qemu-system-x86_64", "-accel", "kvm", "-M", "pc", "-m", "64M", "-nographic", "-nodefaults",
               "-serial", "stdio", "-kernel", guest, "-append", append] + net_args
    else:
        cmd = [vmm[1], "run", "-nographic", "-m", "64M", "-kernel", guest, "-append", append] + net_args
    log = open(os.path.join("/tmp", f"netbench-{os.getpid()}.log"), "w+")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    if tap:
        # The TAP appears when the VMM opens it: give it the host's address then.
        for _ in range(500):
            if os.path.exists(f"/sys/class/net/{tap}"):
                break
            time.sleep(0.02)
        subprocess.run(["ip", "addr", "add", "10.88.0.1/24", "dev", tap], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "set", tap, "up"])
    host.done.wait(240)
    time.sleep(0.2)
    p.kill()
    p.wait()
    log.seek(0)
    out = log.read()
    log.close()
    os.unlink(log.name)
    return out


def one(vmm, guest, kind):
    if kind == "tap":
        tap = "vbench0"
        netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no"
        append = f"ip=10.88.0.2 server=10.88.0.1 port={PORT} count={COUNT} size={SIZE} rtts={RTTS}"
    else:
        tap = None
        netdev = "user,id=n0"
        append = f"port={PORT} count={COUNT} size={SIZE} rtts={RTTS}"
    host = HostSide("0.0.0.0")
    try:
        out = run_vm(vmm, guest, ["-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"], append, host, tap)
    finally:
        host.close()
    r = host.result
    if not r or int(r["ok"]) < RTTS // 2 or host.first is None or host.last == host.first:
        sys.exit(f"netbench: {vmm[0]} over {kind} failed (result {r}):\n{out[-2000:]}")
    mbit = host.bytes * 8 / (host.last - host.first) / 1e6
    return mbit, int(r["rtt_ns"]) / 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vmkit")
    ap.add_argument("guest")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    private_netns()
    rows = []
    for kind in ("tap", "user"):
        # Alternate the VMMs run by run, so load from other jobs on the host hits both alike.
        runs = {"vmkit": [], "qemu": []}
        for i in range(a.runs):
            for vmm in ((("vmkit", a.vmkit), ("qemu", None)) if i % 2 == 0 else
                        (("qemu", None), ("vmkit", a.vmkit))):
                runs[vmm[0]].append(one(vmm, a.guest, kind))
        res = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
        rows.append((kind, res))
    print(f"guest -> host UDP, {COUNT} x {SIZE}-byte datagrams; {RTTS} UDP round trips; median of {a.runs}")
    print("| backend | VMM | throughput | round trip | throughput vs QEMU | latency vs QEMU |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for kind, res in rows:
        q = res["qemu"]
        for vmm in ("vmkit", "qemu"):
            t, l = res[vmm]
            print(f"| {kind} | {vmm} | {t:.2f} Mbit/s | {l:.0f} us | {t / q[0]:.2f}x | {l / q[1]:.2f}x |")


if __name__ == "__main__":
    main()
