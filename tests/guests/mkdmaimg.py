#!/usr/bin/env python3
"""Disk image for the dma_code guest: the functions it reads over its code page (sector 0 is
read to offset 0x200 of the page, sectors 8-15 over the whole page)."""
import struct
import sys


def ret(value):
    return b"\xb8" + struct.pack("<I", value) + b"\xc3"  # mov $value, %eax; ret


img = bytearray(8192)
img[0:6] = ret(12)
img[4096:4102] = ret(2)
img[4096 + 0x200:4096 + 0x206] = ret(22)
with open(sys.argv[1], "wb") as f:
    f.write(img)
