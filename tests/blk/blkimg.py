#!/usr/bin/env python3
"""Image contents for the virtio-blk guest tests: write the host pattern, check what the guest
left. The patterns match tests/guests/virtio_blk.c: 64-bit word j of sector s is
base ^ (s << 16) ^ j, little endian."""
import hashlib
import struct
import sys

PAT_HOST = 0x5AB0000000000000
PAT_GUEST = 0xC0FFEE0000000000


def sector(base, s):
    return struct.pack("<64Q", *[(base ^ (s << 16) ^ j) & (2**64 - 1) for j in range(64)])


def parse_ranges(spec):
    """'16-23,100' -> set of sectors"""
    out = set()
    for part in filter(None, spec.split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def main():
    cmd = sys.argv[1]
    if cmd == "create":  # create FILE SECTORS
        path, n = sys.argv[2], int(sys.argv[3])
        with open(path, "wb") as f:
            for s in range(n):
                f.write(sector(PAT_HOST, s))
        return 0
    if cmd == "sha":  # sha FILE...
        for p in sys.argv[2:]:
            print(hashlib.sha256(open(p, "rb").read()).hexdigest(), p)
        return 0
    if cmd == "check":  # check FILE guest=RANGES zero=RANGES
        path = sys.argv[2]
        guest, zero = set(), set()
        for a in sys.argv[3:]:
            k, _, v = a.partition("=")
            {"guest": guest, "zero": zero}[k].update(parse_ranges(v))
        data = open(path, "rb").read()
        bad = 0
        for s in range(len(data) // 512):
            got = data[s * 512:(s + 1) * 512]
            if s in zero:
                want, what = bytes(512), "zeroes"
            elif s in guest:
                want, what = sector(PAT_GUEST, s), "the guest's pattern"
            else:
                want, what = sector(PAT_HOST, s), "the host's pattern"
            if got != want:
                if bad < 5:
                    print(f"FAIL: {path}: sector {s} does not hold {what}")
                bad += 1
        if bad:
            print(f"FAIL: {path}: {bad} sectors wrong")
            return 1
        print(f"{path}: all {len(data) // 512} sectors as expected")
        return 0
    print("usage: blkimg.py create FILE SECTORS | sha FILE... | check FILE [guest=R] [zero=R]")
    return 2


if __name__ == "__main__":
    sys.exit(main())
