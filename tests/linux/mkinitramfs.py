#!/usr/bin/env python3
"""Write a newc cpio initramfs (what the Linux kernel unpacks) from a directory tree.

usage: mkinitramfs.py DIR OUT.cpio   (no cpio(1) needed; owners are root, times zero)
"""
import os
import stat
import sys


def entry(out, ino, name, mode, data=b"", nlink=1):
    name_b = name.encode() + b"\0"
    hdr = "070701" + "".join("%08x" % v for v in (
        ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
    out.write(hdr.encode() + name_b)
    out.write(b"\0" * (-(110 + len(name_b)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def main():
    root, path = sys.argv[1], sys.argv[2]
    ino = 1
    with open(path, "wb") as out:
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    entry(out, ino, rel, stat.S_IFDIR | 0o755, nlink=2)
                elif stat.S_ISLNK(st.st_mode):
                    entry(out, ino, rel, stat.S_IFLNK | 0o777, os.readlink(full).encode())
                else:
                    with open(full, "rb") as f:
                        entry(out, ino, rel, stat.S_IFREG | (st.st_mode & 0o777), f.read())
                ino += 1
        entry(out, 0, "TRAILER!!!", 0)


if __name__ == "__main__":
    main()
