#!/usr/bin/env python3
"""Wraps the bzImage test guest (an ELF linked at 16 MiB) in a Linux boot protocol 2.15 header,
and makes the initrd that guest checks."""
import struct
import sys

PREF_ADDRESS = 0x1000000
SETUP_SECTS = 1            # setup = boot sector + 1 sector; holds only the header
INITRD_LEN = 5000          # not a multiple of 4 KiB on purpose


def initrd_bytes():
    out = bytearray()
    x = 0x12345678
    for _ in range(INITRD_LEN):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out.append((x >> 16) & 0xFF)
    return bytes(out)


def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def flatten(elf):
    if elf[:4] != b'\x7fELF' or elf[4] != 2:
        sys.exit('mkbzimage: input is not an ELF64 file')
    phoff, = struct.unpack_from('<Q', elf, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', elf, 0x36)
    entry, = struct.unpack_from('<Q', elf, 0x18)
    segs = []
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _ = \
            struct.unpack_from('<IIQQQQQQ', elf, phoff + i * phentsize)
        if p_type == 1 and p_memsz:
            segs.append((p_paddr, p_offset, p_filesz, p_memsz))
    if not segs:
        sys.exit('mkbzimage: no loadable segments')
    base = min(s[0] for s in segs)
    if base != PREF_ADDRESS or entry != base + 0x200:
        sys.exit('mkbzimage: image must start at %#x with its entry at +0x200 (base %#x, entry %#x)'
                 % (PREF_ADDRESS, base, entry))
    file_end = max(s[0] + s[2] for s in segs)
    mem_end = max(s[0] + s[3] for s in segs)
    body = bytearray(file_end - base)
    for paddr, off, filesz, _ in segs:
        body[paddr - base:paddr - base + filesz] = elf[off:off + filesz]
    return bytes(body), mem_end - base


def setup_header(body_len, init_size):
    setup = bytearray((SETUP_SECTS + 1) * 512)

    def put(fmt, off, *v):
        struct.pack_into('<' + fmt, setup, off, *v)
    put('B', 0x1F1, SETUP_SECTS)
    put('I', 0x1F4, (body_len + 15) // 16)         # syssize
    put('H', 0x1FE, 0xAA55)                         # boot_flag
    put('BB', 0x200, 0xEB, 0x6A)                    # jump over the header to 0x26C: its end marks its size
    setup[0x202:0x206] = b'HdrS'
    put('H', 0x206, 0x020F)                         # protocol 2.15
    put('B', 0x211, 0x01)                           # loadflags: LOADED_HIGH
    put('I', 0x214, 0x100000)                       # code32_start
    put('I', 0x22C, 0x7FFFFFFF)                     # initrd_addr_max
    put('I', 0x230, 0x200000)                       # kernel_alignment
    put('B', 0x234, 1)                              # relocatable_kernel
    put('B', 0x235, 21)                             # min_alignment (log2)
    put('H', 0x236, 0x0001)                         # xloadflags: XLF_KERNEL_64
    put('I', 0x238, 4095)                           # cmdline_size
    put('Q', 0x258, PREF_ADDRESS)                   # pref_address
    put('I', 0x260, init_size)                      # init_size
    return setup


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--initrd':
        with open(sys.argv[2], 'wb') as f:
            f.write(initrd_bytes())
        return
    if len(sys.argv) == 2 and sys.argv[1] == '--initrd-sum':
        print('%08x' % fnv1a32(initrd_bytes()))
        return
    if len(sys.argv) != 3:
        sys.exit('usage: mkbzimage.py GUEST.elf OUT | --initrd OUT | --initrd-sum')
    with open(sys.argv[1], 'rb') as f:
        body, span = flatten(f.read())
    init_size = (span + 0xFFF) & ~0xFFF
    with open(sys.argv[2], 'wb') as f:
        f.write(setup_header(len(body), init_size) + body)


if __name__ == '__main__':
    main()
