#!/usr/bin/env python3
# `vmkit img` against the real qemu-img/qemu-io: each named test drives both on the same images.
# Usage: img_test.py VMKIT TESTNAME   (exit 0 pass, 1 fail, 77 skip)
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

VMKIT = None
TMP = None
QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def run(args, cwd=None, check=None, input=None):
    """Run a command; returns CompletedProcess. check=N asserts the exit code."""
    p = subprocess.run(args, cwd=cwd or TMP, capture_output=True, text=True, input=input)
    if p.returncode < 0:
        raise Fail("%s crashed with signal %d\nstderr: %s" % (args, -p.returncode, p.stderr))
    if check is not None and p.returncode != check:
        raise Fail("%s exited %d (expected %d)\nstdout: %s\nstderr: %s"
                   % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p


def unsupported(p):
    """True when the block layer reported that it lacks the feature (ENOTSUP)."""
    return p.returncode != 0 and ("Operation not supported" in p.stderr
                                  or "cannot create images of format" in p.stderr)


def vm(*args, check=0, cwd=None, skip_unsupported=True):
    p = run([VMKIT, "img"] + list(args), cwd=cwd)
    if skip_unsupported and unsupported(p):
        raise Skip("block layer lacks this: vmkit img %s: %s" % (" ".join(args), p.stderr.strip()))
    if check is not None and p.returncode != check:
        raise Fail("vmkit img %s exited %d (expected %d)\nstdout: %s\nstderr: %s"
                   % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p


def qi(*args, check=0, cwd=None):
    return run([QEMU_IMG] + list(args), check=check, cwd=cwd)


def qio(img, *cmds, fmt="qcow2"):
    a = [QEMU_IO, "-f", fmt]
    for c in cmds:
        a += ["-c", c]
    run(a + [img], check=0)


def path(name):
    return os.path.join(TMP, name)


def eq(a, b, what):
    if a != b:
        raise Fail("%s differ:\n  vmkit:    %r\n  qemu-img: %r" % (what, a, b))


def raw_bytes(img, fmt=None):
    """Guest-visible contents via qemu-img (the reference reader)."""
    out = path("ref-%d.raw" % random.randrange(1 << 30))
    args = ["convert"] + (["-f", fmt] if fmt else []) + ["-O", "raw", img, out]
    qi(*args)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def make_raw(name, size, seed=1, extents=None):
    """A raw file with random data in some extents and holes elsewhere."""
    rnd = random.Random(seed)
    with open(path(name), "wb") as f:
        f.truncate(size)
        for off, ln in extents or [(0, 65536), (3 * 65536 + 512, 200000), (size - 4096, 4096)]:
            f.seek(off)
            f.write(rnd.randbytes(ln))
    return path(name)


def qcow2_fixture(name, size="64M"):
    """A qcow2 image written by qemu-io: data, a compressed cluster, zeroes, discards."""
    p = path(name)
    qi("create", "-q", "-f", "qcow2", p, size)
    qio(p, "write -P 0x11 0 128k", "write -P 0x22 1M 64k", "write -c -P 0x33 2M 64k",
        "write -z 4M 64k", "write -P 0x44 5M 4k", "write -P 0x55 8388096 1k",
        "discard 1M 64k")
    return p


def need_qcow2():
    """Skip (not fail) while the block layer has no qcow2 driver at all."""
    p = path("probe-%d.qcow2" % random.randrange(1 << 30))
    qi("create", "-q", "-f", "qcow2", p, "1M")
    vm("info", "-f", "qcow2", p)
    os.unlink(p)


def info_json(tool, img, *extra):
    p = (vm if tool == "vmkit" else qi)("info", "--output=json", *extra, img)
    return json.loads(p.stdout)


# --- tests ---------------------------------------------------------------------------------

def test_cli():
    p = vm("--help")
    if "create" not in p.stdout or "convert" not in p.stdout:
        raise Fail("--help does not list the subcommands")
    p = vm("--version")
    if not p.stdout.startswith("vmkit img version"):
        raise Fail("--version output: %r" % p.stdout)
    for sub in ("amend", "bench", "check", "commit", "compare", "convert", "create", "info", "map",
                "measure", "snapshot", "rebase", "resize"):
        p = vm(sub, "--help")
        if not p.stdout.startswith("Usage: vmkit img " + sub):
            raise Fail("%s --help: %r" % (sub, p.stdout))
    p = vm("nosuchcommand", check=1)
    if "Command not found: nosuchcommand" not in p.stderr:
        raise Fail("unknown command message: %r" % p.stderr)
    p = vm("info", path("does-not-exist"), check=1)
    if not re.match(r"vmkit img: Could not open '.*does-not-exist'", p.stderr):
        raise Fail("missing file message: %r" % p.stderr)
    p = vm("create", "-f", "raw", path("x.raw"), "1Q", check=1)
    if "Invalid image size" not in p.stderr:
        raise Fail("bad size message: %r" % p.stderr)
    p = vm("create", "-f", "raw", path("x.raw"), check=1)
    if "needs a size" not in p.stderr:
        raise Fail("missing size message: %r" % p.stderr)


def test_create_raw():
    a, b = path("a"), path("b")
    os.mkdir(a)
    os.mkdir(b)
    pv = vm("create", "-f", "raw", "img.raw", "10M", cwd=a)
    pq = qi("create", "-f", "raw", "img.raw", "10M", cwd=b)
    eq(pv.stdout, pq.stdout, "create output")
    eq(os.path.getsize(os.path.join(a, "img.raw")), 10 << 20, "raw file size")
    jv = info_json("vmkit", os.path.join(a, "img.raw"))
    jq = info_json("qemu", os.path.join(a, "img.raw"))
    jv.pop("actual-size")
    jq.pop("actual-size")
    eq(jv, jq, "info json of a raw image")
    vm("create", "-q", "-f", "raw", os.path.join(a, "q.raw"), "1G")
    eq(os.path.getsize(os.path.join(a, "q.raw")), 1 << 30, "1G raw size")


CREATE_VARIANTS = [
    [],
    ["-o", "cluster_size=4096"],
    ["-o", "compat=0.10"],
    ["-o", "lazy_refcounts=on"],
    ["-o", "refcount_bits=8"],
    ["-o", "extended_l2=on"],
    ["-o", "compression_type=zstd"],
    ["-o", "cluster_size=2M", "-o", "refcount_bits=64"],
    ["-o", "preallocation=metadata"],
]


def test_create_qcow2():
    need_qcow2()
    for i, opts in enumerate(CREATE_VARIANTS):
        a, b = path("v%d" % i), path("q%d" % i)
        os.mkdir(a)
        os.mkdir(b)
        pv = vm("create", "-f", "qcow2", *opts, "img.qcow2", "3G", cwd=a)
        pq = qi("create", "-f", "qcow2", *opts, "img.qcow2", "3G", cwd=b)
        eq(pv.stdout, pq.stdout, "create output for %s" % opts)
        img = os.path.join(a, "img.qcow2")
        qi("check", img)  # exit 0: qemu-img finds no errors in our image
        jv, jq = info_json("vmkit", img), info_json("qemu", img)
        eq(jv, jq, "info json for %s" % opts)
        eq(vm("info", img).stdout, qi("info", img).stdout, "human info for %s" % opts)
        ref = os.path.join(b, "img.qcow2")
        jr = info_json("qemu", ref)
        for k in ("virtual-size", "cluster-size", "format-specific"):
            eq(jq.get(k), jr.get(k), "qemu-img's view of %s (vmkit-created vs qemu-created) %s" % (k, opts))
        # qemu-img can write to it and read back.
        qio(img, "write -P 0x5a 1G 128k")
        qio(img, "read -P 0x5a 1G 128k")
        qi("check", img)


def test_create_backing():
    need_qcow2()
    base = path("base.qcow2")
    qi("create", "-q", "-f", "qcow2", base, "100M")
    d1, d2 = path("d1"), path("d2")
    os.mkdir(d1)
    os.mkdir(d2)
    for d in (d1, d2):
        shutil.copy(base, os.path.join(d, "base.qcow2"))
    # size inherited from the backing file
    pv = vm("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", cwd=d1)
    pq = qi("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", cwd=d2)
    eq(pv.stdout, pq.stdout, "create output with backing")
    top = os.path.join(d1, "top.qcow2")
    qi("check", top)
    jq = info_json("qemu", top)
    eq(jq["virtual-size"], 100 << 20, "inherited size")
    eq(jq["backing-filename"], "base.qcow2", "backing-filename")
    eq(jq["backing-filename-format"], "qcow2", "backing-filename-format")
    eq(info_json("vmkit", top), jq, "info json with backing")
    # human output too (same file, so even disk size must match)
    eq(vm("info", top).stdout, qi("info", top).stdout, "human info with backing")
    # -u with a missing backing file and an explicit size
    vm("create", "-q", "-f", "qcow2", "-u", "-b", "nonexistent.qcow2", "-F", "qcow2",
       "u.qcow2", "1G", cwd=d1)
    ju = info_json("qemu", os.path.join(d1, "u.qcow2"), "-U")
    eq(ju["backing-filename"], "nonexistent.qcow2", "-u backing name")
    # -b without -F is refused like qemu-img
    p = vm("create", "-f", "qcow2", "-b", "base.qcow2", "x.qcow2", check=1, cwd=d1)
    if "backing format" not in p.stderr:
        raise Fail("missing -F message: %r" % p.stderr)
    # backing chain: three levels
    vm("create", "-q", "-f", "qcow2", "-b", "top.qcow2", "-F", "qcow2", "top2.qcow2", cwd=d1)
    t2 = os.path.join(d1, "top2.qcow2")
    eq(info_json("vmkit", t2, "--backing-chain"), info_json("qemu", t2, "--backing-chain"),
       "info --backing-chain json")
    eq(vm("info", "--backing-chain", t2).stdout, qi("info", "--backing-chain", t2).stdout,
       "info --backing-chain human")


def test_info_qemu_images():
    need_qcow2()
    img = qcow2_fixture("f.qcow2")
    qi("snapshot", "-c", "snap1", img)
    qi("snapshot", "-c", "snap2", img)
    eq(info_json("vmkit", img), info_json("qemu", img), "info json with snapshots")
    eq(vm("info", img).stdout, qi("info", img).stdout, "human info with snapshots")
    eq(vm("snapshot", "-l", img).stdout, qi("snapshot", "-l", img).stdout, "snapshot -l")
    # a v2 image and a zstd image written by qemu-img
    for opts in (["-o", "compat=0.10"], ["-o", "compression_type=zstd,lazy_refcounts=on"]):
        p = path("o%d.qcow2" % len(opts[1]))
        qi("create", "-q", "-f", "qcow2", *opts, p, "5G")
        eq(info_json("vmkit", p), info_json("qemu", p), "info json for qemu image %s" % opts)
        eq(vm("info", p).stdout, qi("info", p).stdout, "human info for qemu image %s" % opts)


def test_read_qemu_written():
    need_qcow2()
    img = qcow2_fixture("f.qcow2")
    want = raw_bytes(img)
    out = path("out.raw")
    vm("convert", "-f", "qcow2", "-O", "raw", img, out)
    with open(out, "rb") as f:
        got = f.read()
    if got != want:
        raise Fail("vmkit convert -O raw of a qemu-io image differs from qemu-img's")
    vm("compare", img, out)
    qi("compare", img, out)
    # zstd-compressed clusters written by qemu
    z = path("z.qcow2")
    qi("create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", z, "8M")
    qio(z, "write -c -P 0x77 0 64k", "write -c -P 0x78 192k 64k")
    vm("convert", "-O", "raw", z, path("z.raw"))
    with open(path("z.raw"), "rb") as f:
        eq(f.read() == raw_bytes(z), True, "zstd image contents")
    # through a backing chain
    top = path("top.qcow2")
    qi("create", "-q", "-f", "qcow2", "-b", img, "-F", "qcow2", top)
    qio(top, "write -P 0x99 64k 128k")
    vm("convert", "-O", "raw", top, path("top.raw"))
    with open(path("top.raw"), "rb") as f:
        eq(f.read() == raw_bytes(top), True, "overlay contents")


def check_roundtrip(src_raw, extra, name):
    q = path(name + ".qcow2")
    vm("convert", "-f", "raw", "-O", "qcow2", *extra, src_raw, q)
    qi("check", q)
    qi("compare", "-f", "raw", "-F", "qcow2", src_raw, q)
    back = path(name + ".back.raw")
    vm("convert", "-f", "qcow2", "-O", "raw", q, back)
    with open(src_raw, "rb") as f1, open(back, "rb") as f2:
        if f1.read() != f2.read():
            raise Fail("round trip through qcow2 %s changed the data" % extra)
    return q


def test_convert():
    need_qcow2()
    src = make_raw("src.raw", 16 << 20)
    q = check_roundtrip(src, [], "plain")
    # sparse: holes stay unallocated, like qemu-img's own conversion
    qi("convert", "-f", "raw", "-O", "qcow2", src, path("ref.qcow2"))
    mine = json.loads(qi("check", "--output=json", q).stdout)["allocated-clusters"]
    ref = json.loads(qi("check", "--output=json", path("ref.qcow2")).stdout)["allocated-clusters"]
    eq(mine, ref, "allocated clusters after convert")
    # compressed, zlib and zstd
    for ct in ("zlib", "zstd"):
        c = check_roundtrip(src, ["-c", "-o", "compression_type=" + ct], "c" + ct)
        j = json.loads(qi("check", "--output=json", c).stdout)
        if not j.get("compressed-clusters"):
            raise Fail("convert -c (%s) wrote no compressed clusters: %s" % (ct, j))
        eq(json.loads(qi("info", "--output=json", c).stdout)["format-specific"]["data"]["compression-type"],
           ct, "compression type")
    # -S 0: everything allocated
    f = check_roundtrip(src, ["-S", "0"], "full")
    j = json.loads(qi("check", "--output=json", f).stdout)
    eq(j["allocated-clusters"], 256, "allocated clusters with -S 0")
    # qcow2 -> qcow2 with options, -p progress
    q2 = path("q2.qcow2")
    p = vm("convert", "-p", "-O", "qcow2", "-o", "cluster_size=16k", q, q2)
    if "100.00/100%" not in p.stdout:
        raise Fail("-p printed no progress: %r" % p.stdout)
    qi("check", q2)
    qi("compare", q, q2)
    eq(info_json("qemu", q2)["cluster-size"], 16384, "cluster_size option")
    # -n into an existing image holding other data
    tgt = path("tgt.qcow2")
    qi("create", "-q", "-f", "qcow2", tgt, "16M")
    qio(tgt, "write -P 0xee 0 16M")
    vm("convert", "-n", "-O", "qcow2", q, tgt)
    qi("compare", q, tgt)
    # -B: the new image only holds what differs from its backing file
    base = path("base.raw")
    shutil.copy(src, base)
    modified = path("mod.raw")
    shutil.copy(src, modified)
    with open(modified, "r+b") as f:
        f.seek(5 << 20)
        f.write(b"\xab" * 65536)
    ov = path("ov.qcow2")
    # source overlay: qcow2 over base with one changed cluster
    srcov = path("srcov.qcow2")
    qi("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", srcov)
    qio(srcov, "write -P 0xab 5M 64k")
    vm("convert", "-O", "qcow2", "-B", base, "-F", "raw", srcov, ov)
    qi("check", ov)
    qi("compare", "-f", "raw", modified, ov)
    j = json.loads(qi("check", "--output=json", ov).stdout)
    eq(j.get("allocated-clusters"), 1, "clusters in the -B overlay")
    # a size that is not a multiple of 512 or of the cluster size, data up to the last byte
    odd = make_raw("odd.raw", 1234567, extents=[(0, 1234567)])
    for extra in ([], ["-c"]):
        o = path("odd%d.qcow2" % len(extra))
        vm("convert", "-f", "raw", "-O", "qcow2", *extra, odd, o)
        qi("check", o)
        qi("compare", "-f", "raw", odd, o)
        qi("convert", "-f", "raw", "-O", "qcow2", odd, path("oddref.qcow2"))
        eq(info_json("qemu", o)["virtual-size"], info_json("qemu", path("oddref.qcow2"))["virtual-size"],
           "virtual size of an odd-sized conversion")
    # multiple sources are concatenated
    cat = path("cat.raw")
    vm("convert", "-O", "raw", src, src, cat)
    with open(src, "rb") as f:
        s = f.read()
    with open(cat, "rb") as f:
        eq(f.read() == s + s, True, "concatenated convert")


def test_convert_snapshot():
    need_qcow2()
    img = qcow2_fixture("s.qcow2")
    qi("snapshot", "-c", "before", img)
    qio(img, "write -P 0x66 0 1M")
    for l in (["-l", "before"], ["-l", "snapshot.name=before"]):
        out, ref = path("snap.raw"), path("snapref.raw")
        vm("convert", *l, "-O", "raw", img, out)
        qi("convert", *l, "-O", "raw", img, ref)
        with open(out, "rb") as a, open(ref, "rb") as b:
            eq(a.read() == b.read(), True, "convert %s contents" % l)
    vm("convert", "-l", "nosuch", "-O", "raw", img, path("x.raw"), check=1)


def qcow2_header(p):
    with open(p, "rb") as f:
        h = f.read(104)
    (magic, ver, bfo, bfs, cbits, size, crypt, l1_size, l1_off, rt_off, rt_clusters, nsnap,
     snap_off) = struct.unpack(">IIQIIQIIQQIIQ", h[:72])
    refcount_order = struct.unpack(">I", h[96:100])[0] if ver >= 3 else 4
    return dict(cluster_bits=cbits, l1_off=l1_off, rt_off=rt_off, refcount_order=refcount_order)


def set_refcount(p, cluster, value):
    h = qcow2_header(p)
    cs = 1 << h["cluster_bits"]
    assert h["refcount_order"] == 4
    per_block = cs // 2
    with open(p, "r+b") as f:
        f.seek(h["rt_off"] + 8 * (cluster // per_block))
        rb = struct.unpack(">Q", f.read(8))[0]
        assert rb, "refcount block not allocated in the fixture"
        f.seek(rb + 2 * (cluster % per_block))
        f.write(struct.pack(">H", value))


def first_data_cluster(p):
    h = qcow2_header(p)
    with open(p, "rb") as f:
        f.seek(h["l1_off"])
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2)
        return (struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00) >> h["cluster_bits"]


def check_json(tool, img, *extra, code):
    p = (vm if tool == "vmkit" else qi)("check", "--output=json", *extra, img, check=code)
    return json.loads(p.stdout)


def test_check():
    need_qcow2()
    clean = path("clean.qcow2")
    qi("create", "-q", "-f", "qcow2", clean, "64M")
    qio(clean, "write -P 1 0 1M")
    p = vm("check", clean)
    eq(p.stdout, qi("check", clean).stdout, "check output of a clean image")
    eq(check_json("vmkit", clean, code=0), check_json("qemu", clean, code=0), "check json (clean)")
    # leak: a referenced-by-nobody cluster past the end of the file
    leak = path("leak.qcow2")
    shutil.copy(clean, leak)
    n = os.path.getsize(leak) >> 16
    with open(leak, "r+b") as f:
        f.truncate((n + 1) << 16)
    set_refcount(leak, n, 1)
    jq = check_json("qemu", leak, code=3)
    jv = check_json("vmkit", leak, code=3)
    eq(jv.get("leaks"), jq.get("leaks"), "leak count")
    eq(jv.get("corruptions"), jq.get("corruptions"), "corruption count (leaked image)")
    p = vm("check", leak, check=3)
    if "1 leaked clusters were found on the image." not in p.stdout:
        raise Fail("leak message: %r" % p.stdout)
    # corruption: a data cluster whose refcount is 0
    bad = path("bad.qcow2")
    shutil.copy(clean, bad)
    set_refcount(bad, first_data_cluster(bad), 0)
    jq = check_json("qemu", bad, code=2)
    jv = check_json("vmkit", bad, code=2)
    eq(jv.get("corruptions"), jq.get("corruptions"), "corruption count")
    p = vm("check", bad, check=2)
    if "errors were found on the image." not in p.stdout:
        raise Fail("corruption message: %r" % p.stdout)
    # raw: no checks, exit 63 like qemu-img
    r = make_raw("r.raw", 1 << 20)
    p = vm("check", "-f", "raw", r, check=63)
    if "does not support checks" not in p.stderr:
        raise Fail("raw check message: %r" % p.stderr)
    vm("check", path("missing.qcow2"), check=1)


def leaked_and_corrupted():
    clean = path("clean.qcow2")
    qi("create", "-q", "-f", "qcow2", clean, "64M")
    qio(clean, "write -P 1 0 1M")
    leak = path("leak.qcow2")
    shutil.copy(clean, leak)
    n = os.path.getsize(leak) >> 16
    with open(leak, "r+b") as f:
        f.truncate((n + 1) << 16)
    set_refcount(leak, n, 1)
    bad = path("bad.qcow2")
    shutil.copy(clean, bad)
    set_refcount(bad, first_data_cluster(bad), 0)
    return leak, bad


def test_check_repair():
    need_qcow2()
    leak, bad = leaked_and_corrupted()
    p = vm("check", "-r", "leaks", leak, check=0)
    if "    1 leaked clusters\n" not in p.stdout or "No errors were found on the image." not in p.stdout:
        raise Fail("check -r leaks output: %r" % p.stdout)
    qi("check", leak)
    vm("check", "-r", "all", bad, check=0)
    qi("check", bad)
    qio(bad, "read -P 1 0 1M")


def test_damaged():
    need_qcow2()
    good = path("good.qcow2")
    qi("create", "-q", "-f", "qcow2", good, "64M")
    qio(good, "write -P 1 0 1M")
    vm("info", good)  # qcow2 must open at all, or the failures below prove nothing
    cases = {
        "truncated": lambda f: f.truncate(50),
        "l1_huge": lambda f: (f.seek(36), f.write(struct.pack(">I", 0x7fffffff))),
        "l1_off_beyond": lambda f: (f.seek(40), f.write(struct.pack(">Q", 1 << 60))),
        "cluster_bits": lambda f: (f.seek(20), f.write(struct.pack(">I", 40))),
        "refcount_table": lambda f: (f.seek(48), f.write(struct.pack(">Q", 12345))),
        "backing_name_len": lambda f: (f.seek(8), f.write(struct.pack(">QI", 200, 100000))),
    }
    for name, damage in cases.items():
        p = path(name + ".qcow2")
        shutil.copy(good, p)
        with open(p, "r+b") as f:
            damage(f)
        for cmd in (["info"], ["check"], ["convert", "-O", "raw"], ["map"], ["compare"]):
            args = cmd + ["-f", "qcow2", p]
            if cmd[0] == "convert":
                args.append(path("out.raw"))
            if cmd[0] == "compare":
                args = ["compare", "-f", "qcow2", "-F", "qcow2", p, good]
            r = vm(*args, check=None, skip_unsupported=False)
            if r.returncode == 0 and cmd[0] == "info":
                raise Fail("info accepted a damaged image (%s)" % name)
            if r.returncode != 0 and not r.stderr.startswith("vmkit img"):
                raise Fail("%s on %s: no error message: %r" % (cmd[0], name, r.stderr))


def test_fuzz():
    """Random byte flips in a qcow2 image's metadata: every command ends cleanly (no signal,
    no hang) and a failure always comes with a message."""
    need_qcow2()
    base = path("base.qcow2")
    qi("create", "-q", "-f", "qcow2", base, "16M")
    qio(base, "write -P 1 0 1M", "write -c -P 2 2M 64k", "write -P 3 8M 64k")
    qi("snapshot", "-c", "s", base)
    with open(base, "rb") as f:
        data = f.read()
    rnd = random.Random(20261122)
    regions = [(0, 112), (0x10000, 0x10000 + 512), (0x20000, 0x20000 + 512), (0x30000, 0x34000),
               (0, len(data))]
    f = path("f.qcow2")
    for i in range(40):
        b = bytearray(data)
        for _ in range(rnd.randint(1, 6)):
            lo, hi = rnd.choice(regions)
            b[rnd.randrange(lo, min(hi, len(b)))] = rnd.randrange(256)
        with open(f, "wb") as out:
            out.write(b)
        for cmd in (["info", "-f", "qcow2", f], ["check", "-f", "qcow2", f],
                    ["map", "--output=json", "-f", "qcow2", f],
                    ["convert", "-f", "qcow2", "-O", "raw", f, path("o.raw")],
                    ["snapshot", "-l", f], ["compare", "-f", "qcow2", "-F", "qcow2", f, base]):
            try:
                p = subprocess.run([VMKIT, "img"] + cmd, capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                shutil.copy(f, "/tmp/vmkit-img-fuzz-hang.qcow2")
                raise Fail("%s hung on fuzz case %d (saved /tmp/vmkit-img-fuzz-hang.qcow2)" % (cmd[0], i))
            if p.returncode < 0 or p.returncode > 3 or "Sanitizer" in p.stderr:
                shutil.copy(f, "/tmp/vmkit-img-fuzz-crash.qcow2")
                raise Fail("%s: exit %d on fuzz case %d (saved /tmp/vmkit-img-fuzz-crash.qcow2): %s"
                           % (cmd[0], p.returncode, i, p.stderr[-500:]))
            if p.returncode == (2 if cmd[0] == "compare" else 1) and not p.stderr.strip():
                raise Fail("%s failed without a message on fuzz case %d" % (cmd[0], i))


def test_compare_raw():
    a = make_raw("a.raw", 4 << 20)
    b = make_raw("b.raw", 4 << 20)  # same data and the same holes
    for extra in ([], ["-s"], ["-f", "raw", "-F", "raw"]):
        p = vm("compare", *extra, a, b, check=0)
        eq(p.stdout, qi("compare", *extra, a, b).stdout, "compare output %s" % extra)
    with open(b, "r+b") as f:
        f.seek(1000000)
        f.write(b"\x01" * 10)
    eq(vm("compare", a, b, check=1).stdout, qi("compare", a, b, check=1).stdout, "mismatch message")
    big = path("big.raw")
    shutil.copy(a, big)
    with open(big, "r+b") as f:
        f.truncate(8 << 20)
    eq(vm("compare", a, big).stdout, qi("compare", a, big).stdout, "size mismatch output")
    eq(vm("compare", "-s", a, big, check=1).stdout, qi("compare", "-s", a, big, check=1).stdout,
       "strict size mismatch")
    with open(big, "r+b") as f:
        f.seek(6 << 20)
        f.write(b"\x01")
    eq(vm("compare", big, a, check=1).stdout, qi("compare", big, a, check=1).stdout, "tail mismatch")
    vm("compare", a, path("missing"), check=2)
    # convert raw -> raw: sparse output, concatenation
    out = path("out.raw")
    vm("convert", "-f", "raw", "-O", "raw", a, out)
    with open(a, "rb") as f1, open(out, "rb") as f2:
        eq(f1.read() == f2.read(), True, "raw convert contents")
    if os.stat(out).st_blocks * 512 > os.stat(a).st_blocks * 512 + 65536:
        raise Fail("convert did not keep holes: %d vs %d blocks" % (os.stat(out).st_blocks, os.stat(a).st_blocks))


def test_compare():
    need_qcow2()
    a = make_raw("a.raw", 4 << 20)
    b = path("b.qcow2")
    qi("convert", "-f", "raw", "-O", "qcow2", a, b)
    for extra in ([], ["-f", "raw", "-F", "qcow2"]):
        p = vm("compare", *extra, a, b, check=0)
        eq(p.stdout, qi("compare", *extra, a, b).stdout, "compare output %s" % extra)
    # strict: holes in the raw file vs unallocated qcow2 clusters differ in block status
    pv, pq = vm("compare", "-s", a, b, check=None), qi("compare", "-s", a, b, check=None)
    eq((pv.returncode, pv.stdout), (pq.returncode, pq.stdout), "compare -s raw vs qcow2")
    b2 = path("b2.qcow2")
    qi("convert", "-f", "raw", "-O", "qcow2", a, b2)
    eq(vm("compare", "-s", b, b2, check=0).stdout, qi("compare", "-s", b, b2).stdout, "compare -s qcow2")
    qio(b2, "write -z 3M 64k")
    pv, pq = vm("compare", "-s", b, b2, check=None), qi("compare", "-s", b, b2, check=None)
    eq((pv.returncode, pv.stdout), (pq.returncode, pq.stdout), "compare -s, allocation differs")
    qio(b, "write -P 0xcd 1000000 10")
    p = vm("compare", a, b, check=1)
    q = qi("compare", a, b, check=1)
    eq(p.stdout, q.stdout, "mismatch message")
    # size mismatch: larger image with zero tail is identical, non-strict
    big = path("big.qcow2")
    qi("convert", "-f", "raw", "-O", "qcow2", a, big)
    qi("resize", big, "8M")
    p = vm("compare", a, big, check=0)
    eq(p.stdout, qi("compare", a, big).stdout, "size mismatch output")
    p = vm("compare", "-s", a, big, check=1)
    eq(p.stdout, qi("compare", "-s", a, big, check=1).stdout, "strict size mismatch output")
    qio(big, "write -P 1 6M 512")
    p = vm("compare", a, big, check=1)
    eq(p.stdout, qi("compare", a, big, check=1).stdout, "mismatch in the tail")
    vm("compare", a, path("missing"), check=2)
    # -q prints nothing
    p = vm("compare", "-q", a, a, check=0)
    eq(p.stdout, "", "compare -q output")


def test_commit():
    need_qcow2()
    base = path("base.qcow2")
    qi("create", "-q", "-f", "qcow2", base, "32M")
    qio(base, "write -P 0x10 0 4M")
    top = path("top.qcow2")
    qi("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
    qio(top, "write -P 0x20 1M 1M", "write -z 3M 64k", "write -P 0x21 20M 100k")
    want = raw_bytes(top)
    p = vm("commit", top)
    eq(p.stdout, "Image committed.\n", "commit output")
    qi("check", base)
    qi("check", top)
    eq(raw_bytes(base) == want, True, "base contents after commit")
    eq(raw_bytes(top) == want, True, "top contents after commit")
    # the top was emptied (no -d): nothing allocated in it any more
    j = json.loads(qi("map", "--output=json", top).stdout)
    if any(e["depth"] == 0 and e["present"] for e in j):
        raise Fail("commit left data in the top image: %s" % j)
    # -d keeps the top's data; -b names the base of a 3-level chain
    mid = path("mid.qcow2")
    qi("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", mid)
    qio(mid, "write -P 0x30 8M 64k")
    t2 = path("t2.qcow2")
    qi("create", "-q", "-f", "qcow2", "-b", mid, "-F", "qcow2", t2)
    qio(t2, "write -P 0x31 9M 64k")
    want = raw_bytes(t2)
    vm("commit", "-q", "-b", base, t2)
    eq(raw_bytes(base) == want, True, "base after commit -b")
    eq(raw_bytes(t2) == want, True, "top after commit -b")
    qio(t2, "read -P 0x31 9M 64k")
    nob = path("nob.qcow2")
    qi("create", "-q", "-f", "qcow2", nob, "1M")
    vm("commit", nob, check=1)


def test_rebase():
    need_qcow2()
    b1 = path("b1.qcow2")
    b2 = path("b2.qcow2")
    qi("create", "-q", "-f", "qcow2", b1, "16M")
    qi("create", "-q", "-f", "qcow2", b2, "16M")
    qio(b1, "write -P 0x01 0 4M")
    qio(b2, "write -P 0x01 0 2M", "write -P 0x02 2M 4M")
    top = path("top.qcow2")
    qi("create", "-q", "-f", "qcow2", "-b", b1, "-F", "qcow2", top)
    qio(top, "write -P 0x03 1M 64k")
    want = raw_bytes(top)
    vm("rebase", "-b", b2, "-F", "qcow2", top)
    qi("check", top)
    j = info_json("qemu", top)
    eq(j["backing-filename"], b2, "backing after safe rebase")
    eq(raw_bytes(top) == want, True, "contents after safe rebase")
    # unsafe: only the header changes
    b3 = path("b3.qcow2")
    qi("create", "-q", "-f", "qcow2", b3, "16M")
    qio(b3, "write -P 0x05 0 16M")
    vm("rebase", "-u", "-b", b3, "-F", "qcow2", top)
    eq(info_json("qemu", top)["backing-filename"], b3, "backing after rebase -u")
    eq(raw_bytes(top) == want, False, "rebase -u must not copy data")
    qio(top, "read -P 0x05 8M 1M", "read -P 0x03 1M 64k")
    # flatten
    vm("rebase", "-u", "-b", b2, "-F", "qcow2", top)
    want = raw_bytes(top)
    vm("rebase", "-b", "", top)
    j = info_json("qemu", top)
    if "backing-filename" in j:
        raise Fail("rebase -b '' left a backing file: %s" % j)
    eq(raw_bytes(top) == want, True, "contents after flattening")
    qi("check", top)


def test_resize_raw():
    resize_fmt("raw")


def test_resize():
    need_qcow2()
    resize_fmt("qcow2")
    # data survives growing
    g = path("g.qcow2")
    qi("create", "-q", "-f", "qcow2", g, "1M")
    qio(g, "write -P 0x42 0 1M")
    vm("resize", g, "+10M")
    qio(g, "read -P 0x42 0 1M", "read -P 0 1M 10M")


def resize_fmt(fmt):
    if True:
        v, q = path("v." + fmt), path("q." + fmt)
        qi("create", "-q", "-f", fmt, v, "1G")
        qi("create", "-q", "-f", fmt, q, "1G")
        for step in (["+1G"], ["2500M"], ["--shrink", "-500M"]):
            args = ["resize", "-f", fmt] + step[:-1] + [None, step[-1]]
            pv = vm(*[v if a is None else a for a in args])
            pq = qi(*[q if a is None else a for a in args])
            eq(pv.stdout, pq.stdout, "resize output")
            eq(info_json("vmkit", v)["virtual-size"], info_json("qemu", q)["virtual-size"],
               "size after resize %s" % step)
            eq(info_json("qemu", v)["virtual-size"], info_json("qemu", q)["virtual-size"],
               "qemu-img's view after resize %s" % step)
            if fmt == "qcow2":
                qi("check", v)
        p = vm("resize", "-f", fmt, v, "1M", check=1)
        if "--shrink" not in p.stderr:
            raise Fail("shrink without --shrink message: %r" % p.stderr)


def test_snapshot():
    need_qcow2()
    img = path("s.qcow2")
    qi("create", "-q", "-f", "qcow2", img, "16M")
    qio(img, "write -P 0x01 0 1M")
    vm("snapshot", "-c", "one", img)
    qio(img, "write -P 0x02 0 1M")
    vm("snapshot", "-c", "two", img)
    qi("check", img)
    names = re.findall(r"^\d+\s+(\S+)", qi("snapshot", "-l", img).stdout, re.M)
    eq(names, ["one", "two"], "snapshots seen by qemu-img")
    eq(vm("snapshot", "-l", img).stdout, qi("snapshot", "-l", img).stdout, "snapshot -l output")
    eq(vm("snapshot", img).stdout, qi("snapshot", "-l", img).stdout, "snapshot with no action lists")
    vm("snapshot", "-a", "one", img)
    qio(img, "read -P 0x01 0 1M")
    vm("snapshot", "-d", "one", img)
    names = re.findall(r"^\d+\s+(\S+)", qi("snapshot", "-l", img).stdout, re.M)
    eq(names, ["two"], "snapshots after delete")
    qi("check", img)
    p = vm("snapshot", "-a", "nosuch", img, check=1, skip_unsupported=False)
    if "Could not apply snapshot 'nosuch'" not in p.stderr:
        raise Fail("apply error message: %r" % p.stderr)
    p = vm("snapshot", "-d", "nosuch", img, check=1, skip_unsupported=False)
    if "Could not delete snapshot 'nosuch'" not in p.stderr:
        raise Fail("delete error message: %r" % p.stderr)
    # qemu-img's snapshots, applied by vmkit
    qi("snapshot", "-c", "q", img)
    qio(img, "write -P 0x09 0 1M")
    vm("snapshot", "-a", "q", img)
    qio(img, "read -P 0x01 0 1M")  # "one" was applied before "q" was taken
    qi("check", img)


def test_amend():
    need_qcow2()
    img = path("a.qcow2")
    qi("create", "-q", "-f", "qcow2", img, "64M")
    qio(img, "write -P 0x07 0 1M")
    for opt, key, val in (("lazy_refcounts=on", "lazy-refcounts", True),
                          ("lazy_refcounts=off", "lazy-refcounts", False),
                          ("compat=0.10", "compat", "0.10"),
                          ("compat=1.1", "compat", "1.1")):
        vm("amend", "-o", opt, img)
        qi("check", img)
        eq(info_json("qemu", img)["format-specific"]["data"][key], val, "after amend -o " + opt)
        qio(img, "read -P 0x07 0 1M")
    r = make_raw("r.raw", 1 << 20)
    vm("amend", "-f", "raw", "-o", "size=2M", r, check=1)


def test_amend_refcount_bits():
    need_qcow2()
    img = path("a.qcow2")
    qi("create", "-q", "-f", "qcow2", img, "64M")
    qio(img, "write -P 0x07 0 1M")
    for bits in (32, 1, 64, 16):
        vm("amend", "-o", "refcount_bits=%d" % bits, img)
        qi("check", img)
        eq(info_json("qemu", img)["format-specific"]["data"]["refcount-bits"], bits, "refcount bits")
        qio(img, "read -P 0x07 0 1M")


def test_map_raw():
    r = make_raw("m.raw", 8 << 20)
    eq(vm("map", "--output=json", "-f", "raw", r).stdout,
       qi("map", "--output=json", "-f", "raw", r).stdout, "map json raw")
    eq(vm("map", "-f", "raw", r).stdout, qi("map", "-f", "raw", r).stdout, "map human raw")


def test_map():
    need_qcow2()
    r = make_raw("m.raw", 8 << 20)
    img = qcow2_fixture("m.qcow2")
    top = path("mtop.qcow2")
    qi("create", "-q", "-f", "qcow2", "-b", img, "-F", "qcow2", top)
    qio(top, "write -P 0x77 3M 128k", "write -z 0 64k")
    for i in (img, top):
        eq(vm("map", "--output=json", i).stdout, qi("map", "--output=json", i).stdout, "map json " + i)
    rng = ["--start-offset=1M", "--max-length=2M"]
    eq(vm("map", "--output=json", *rng, top).stdout, qi("map", "--output=json", *rng, top).stdout,
       "map json with a range")
    # compressed clusters cannot be shown in human format: same error, same exit code
    pv, pq = vm("map", img, check=None), qi("map", img, check=None)
    eq((pv.returncode, pv.stdout), (pq.returncode, pq.stdout), "human map of a compressed image")
    if "compressed clusters" not in pv.stderr:
        raise Fail("map error message: %r" % pv.stderr)
    plain = path("plain.qcow2")
    qi("create", "-q", "-f", "qcow2", plain, "8M")
    qio(plain, "write -P 1 0 128k", "write -P 2 1M 64k")
    eq(vm("map", plain).stdout, qi("map", plain).stdout, "map human qcow2")


def test_measure():
    for size in ("1G", "100M", "1234567", "2T"):
        for opts in ([], ["-o", "cluster_size=4k"], ["-o", "refcount_bits=1"], ["-o", "extended_l2=on"],
                     ["-o", "preallocation=full"]):
            for fmt in ("qcow2", "raw"):
                if fmt == "raw" and opts:
                    continue
                a = ["measure", "--size", size, "-O", fmt] + opts
                eq(vm(*a).stdout, qi(*a).stdout, "measure %s" % a)
    a = ["measure", "--output=json", "--size", "10G", "-O", "qcow2"]
    eq(json.loads(vm(*a).stdout), json.loads(qi(*a).stdout), "measure json")
    r = make_raw("me.raw", 16 << 20)
    for fmt in ("qcow2", "raw"):
        a = ["measure", "-O", fmt, "-f", "raw", r]
        eq(vm(*a).stdout, qi(*a).stdout, "measure %s" % a)


def test_measure_qcow2():
    need_qcow2()
    r = make_raw("me.raw", 16 << 20)
    img = qcow2_fixture("me.qcow2")
    for src in (img, r):
        for fmt in ("qcow2", "raw"):
            a = ["measure", "-O", fmt, src]
            eq(vm(*a).stdout, qi(*a).stdout, "measure %s" % a)


def test_bench_raw():
    bench_fmt("raw")


def test_bench():
    need_qcow2()
    bench_fmt("qcow2")


def bench_fmt(fmt):
    if True:
        img = path("b." + fmt)
        qi("create", "-q", "-f", fmt, img, "64M")
        p = vm("bench", "-f", fmt, "-c", "2000", "-d", "8", "-s", "4k", "-S", "8k", img)
        lines = p.stdout.splitlines()
        eq(lines[0], "Sending 2000 read requests, 4096 bytes each, 8 in parallel "
           "(starting at offset 0, step size 8192)", "bench header")
        if not re.fullmatch(r"Run completed in \d+\.\d{3} seconds\.", lines[1]):
            raise Fail("bench result line: %r" % lines[1])
        # writes land where qemu-img bench would put them, with the pattern byte
        p = vm("bench", "-f", fmt, "-w", "-c", "16", "-d", "4", "-s", "64k", "-o", "1M",
               "--pattern=171", "--flush-interval=4", img)
        if "Sending flush every 4 requests" not in p.stdout:
            raise Fail("flush-interval line missing: %r" % p.stdout)
        qio(img, "read -P 0xab 1M 1M", "read -P 0 0 1M", "read -P 0 2M 1M", fmt=fmt)
        if fmt == "qcow2":
            qi("check", img)


TESTS = {n[5:]: f for n, f in globals().items() if n.startswith("test_")}


def main():
    global VMKIT, TMP
    if len(sys.argv) != 3 or sys.argv[2] not in TESTS:
        print("usage: img_test.py VMKIT {%s}" % ",".join(TESTS), file=sys.stderr)
        return 2
    VMKIT = os.path.abspath(sys.argv[1])
    if not QEMU_IMG or not QEMU_IO:
        print("SKIP: qemu-img/qemu-io not installed (Debian package qemu-utils)")
        return 77
    TMP = tempfile.mkdtemp(prefix="vmkit-img-%s-" % sys.argv[2])
    try:
        TESTS[sys.argv[2]]()
    except Skip as e:
        print("SKIP: %s" % e)
        return 77
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print("PASS: %s" % sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
