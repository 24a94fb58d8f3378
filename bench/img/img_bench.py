#!/usr/bin/env python3
# Benchmark `vmkit img` against Debian's qemu-img in the same run: bench and convert, ratios.
# Usage: bench/img/img_bench.py [--vmkit build/src/cli/vmkit] [--dir /var/tmp] [--quick]
#        [--write-docs docs/benchmarks.md]
# Ratio = vmkit time / qemu-img time (below 1.0: vmkit is faster). Not part of `make check`.
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


class ToolFailed(Exception):
    pass


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise ToolFailed("failed: %s\n%s%s" % (" ".join(args), p.stdout, p.stderr))
    return p


def measure(rows, name, fv, fq, reps):
    """Time both tools; a vmkit failure is recorded (n/a), not fatal."""
    try:
        tv = best(fv, reps)
    except ToolFailed as e:
        print("%-55s vmkit FAILED: %s" % (name, str(e).splitlines()[-1]), flush=True)
        rows.append((name, None, best(fq, reps)))
        return
    tq = best(fq, reps)
    rows.append((name, tv, tq))
    print("%-55s vmkit %7.3fs  qemu-img %7.3fs  ratio %.2f" % (name, tv, tq, tv / tq), flush=True)


def bench_time(tool, args):
    out = run(tool + ["bench"] + args).stdout
    m = re.search(r"Run completed in ([\d.]+) seconds", out)
    if not m:
        sys.exit("no timing in output of %s: %r" % (tool, out))
    return float(m.group(1))


def wall(args):
    t = time.monotonic()
    run(args)
    return time.monotonic() - t


def best(fn, reps):
    return min(fn() for _ in range(reps))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmkit", default="build/src/cli/vmkit")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="fewer requests, smaller images")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--write-docs", metavar="MD", help="replace the 'vmkit img' section of this file")
    a = ap.parse_args()
    qemu = shutil.which("qemu-img")
    if not qemu:
        sys.exit("qemu-img is not installed (Debian package qemu-utils)")
    vmkit = [os.path.abspath(a.vmkit), "img"]
    qimg = [qemu]
    d = tempfile.mkdtemp(prefix="vmkit-img-bench-", dir=a.dir)
    count = "20000" if a.quick else "100000"
    rows = []
    try:
        for fmt in ("raw", "qcow2"):
            img = os.path.join(d, "bench." + fmt)
            run(qimg + ["create", "-q", "-f", fmt, img, "1G"])
            # Fill the image so reads hit allocated clusters.
            run(qimg + ["bench", "-q", "-f", fmt, "-w", "-c", "256", "-s", "4M", "-t", "none", img])
            cases = [
                ("seq read 4k d1", ["-c", count, "-d", "1", "-s", "4k"]),
                ("seq read 4k d32", ["-c", count, "-d", "32", "-s", "4k"]),
                ("strided read 4k d32 (-S 1M)", ["-c", count, "-d", "32", "-s", "4k", "-S", "1M"]),
                ("seq read 64k d16", ["-c", str(int(count) // 4), "-d", "16", "-s", "64k"]),
                ("seq write 4k d32", ["-w", "-c", count, "-d", "32", "-s", "4k"]),
                ("strided write 4k d32 (-S 1M, -o 4k)", ["-w", "-c", count, "-d", "32", "-s", "4k",
                                                         "-S", "1M", "-o", "4k"]),
                ("seq write 64k d16 flush/64", ["-w", "-c", str(int(count) // 4), "-d", "16", "-s", "64k",
                                                "--flush-interval=64"]),
            ]
            for name, args in cases:
                full = ["-f", fmt, "-t", "none"] + args + [img]
                measure(rows, "bench %s: %s" % (fmt, name), lambda: bench_time(vmkit, full),
                        lambda: bench_time(qimg, full), a.reps)
        # convert of a 1 GiB image: a quarter data (random), the rest holes
        size = 256 << 20 if a.quick else 1 << 30
        src = os.path.join(d, "src.raw")
        with open(src, "wb") as f:
            f.truncate(size)
            chunk = os.urandom(1 << 20)
            for off in range(0, size, 4 << 20):
                f.seek(off)
                f.write(chunk)
        srcq = os.path.join(d, "src.qcow2")
        run(qimg + ["convert", "-f", "raw", "-O", "qcow2", src, srcq])
        label = "1 GiB" if size == 1 << 30 else "%d MiB" % (size >> 20)
        for name, args in (
            ("raw -> qcow2", ["-f", "raw", "-O", "qcow2", src]),
            ("qcow2 -> raw", ["-f", "qcow2", "-O", "raw", srcq]),
            ("raw -> raw", ["-f", "raw", "-O", "raw", src]),
            ("raw -> qcow2 -c (zlib)", ["-c", "-f", "raw", "-O", "qcow2", src]),
        ):
            out = os.path.join(d, "out")

            def conv(tool):
                if os.path.exists(out):
                    os.unlink(out)
                return wall(tool + ["convert"] + args + [out])

            measure(rows, "convert %s %s" % (label, name), lambda: conv(vmkit), lambda: conv(qimg), a.reps)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if a.write_docs:
        write_docs(a.write_docs, rows, count)


def write_docs(md, rows, count):
    qv = run(["qemu-img", "--version"]).stdout.splitlines()[0]
    sec = ["## vmkit img", "",
           "`bench/img/img_bench.py` (same flags for both tools, `-t none`, best of 3; %s requests per"
           " bench case). Ratio = vmkit time / qemu-img time; below 1.0 vmkit is faster. Peer: %s."
           % (count, qv), "", "| case | vmkit (s) | qemu-img (s) | ratio |", "|---|---:|---:|---:|"]
    for name, tv, tq in rows:
        if tv is None:
            sec.append("| %s | failed | %.3f | n/a |" % (name, tq))
        else:
            sec.append("| %s | %.3f | %.3f | %.2f |" % (name, tv, tq, tv / tq))
    sec.append("")
    text = open(md).read() if os.path.exists(md) else "# Benchmarks\n\n"
    # Replace only our section (up to the next "## " heading).
    m = re.search(r"^## vmkit img\n.*?(?=^## |\Z)", text, re.M | re.S)
    new = "\n".join(sec) + "\n"
    text = text[:m.start()] + new + text[m.end():] if m else text.rstrip("\n") + "\n\n" + new
    with open(md, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
