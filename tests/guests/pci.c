/* PCI: bus 0 through CF8 and ECAM agree, BARs are sized and placed sanely, pci-testdev answers on both BARs. */
#include "rt/rt.h"

const char guest_name[] = "pci";

#define TESTDEV_VENDOR 0x1b36
#define TESTDEV_DEVICE 0x0005
#define MAX_BARS 64

struct bar {
    uint8_t dev, fn, idx;
    bool io;
    uint64_t base, size;
};
static struct bar bars[MAX_BARS];
static unsigned nbars;

static bool io_overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return b && a < b + blen && b < a + alen;
}

/* Sizes BAR idx (decoding off while the all-ones pattern is in place); returns the next BAR index. */
static unsigned bar_probe(unsigned dev, unsigned fn, unsigned idx)
{
    unsigned off = 0x10 + 4 * idx;
    uint16_t cmd = pci_cf8_read16(0, dev, fn, 4);
    pci_cf8_write16(0, dev, fn, 4, cmd & ~3u);
    uint32_t orig = pci_cf8_read32(0, dev, fn, off);
    pci_cf8_write32(0, dev, fn, off, ~0u);
    uint32_t probe = pci_cf8_read32(0, dev, fn, off);
    pci_cf8_write32(0, dev, fn, off, orig);
    bool io = orig & 1, is64 = !io && ((orig >> 1) & 3) == 2;
    uint64_t base = io ? (orig & ~3u) : (orig & ~15u);
    /* I/O BARs may implement only 16 address bits: treat the upper ones as fixed. */
    uint64_t mask = io ? ((probe & ~3u) | 0xffffffffffff0000UL) : (probe & ~15u);
    if (is64) {
        CHECK(idx < 5, "%02x.%u BAR%u is 64-bit but the last BAR", dev, fn, idx);
        uint32_t orig_hi = pci_cf8_read32(0, dev, fn, off + 4);
        pci_cf8_write32(0, dev, fn, off + 4, ~0u);
        uint32_t probe_hi = pci_cf8_read32(0, dev, fn, off + 4);
        pci_cf8_write32(0, dev, fn, off + 4, orig_hi);
        base |= (uint64_t)orig_hi << 32;
        mask |= (uint64_t)probe_hi << 32;
    } else {
        mask |= 0xffffffff00000000UL;
    }
    pci_cf8_write16(0, dev, fn, 4, cmd);
    CHECK(pci_cf8_read32(0, dev, fn, off) == orig, "%02x.%u BAR%u did not restore", dev, fn, idx);
    if (probe == 0 || (io && (probe & ~3u) == 0) || (!io && (probe & ~15u) == 0 && !is64))
        return idx + 1; /* not implemented */
    uint64_t size = ~mask + 1;
    CHECK(size && !(size & (size - 1)), "%02x.%u BAR%u has a size mask %lx that is not a power of two", dev,
          fn, idx, mask);
    CHECK(base, "%02x.%u BAR%u (%s, %lu bytes) is not assigned", dev, fn, idx, io ? "I/O" : "memory", size);
    CHECK(!(base & (size - 1)), "%02x.%u BAR%u at %lx is not aligned to its size %lx", dev, fn, idx, base, size);
    if (io) {
        /* Clear of the ISA range, the config ports and the ACPI PM registers. */
        CHECK(base >= 0x400 && base + size <= 0x10000 && !io_overlaps(base, size, 0xCF8, 8) &&
                  !io_overlaps(base, size, acpi.pm1a_evt, 4) && !io_overlaps(base, size, acpi.pm1a_cnt, 2) &&
                  !io_overlaps(base, size, acpi.pm_tmr, 4),
              "%02x.%u BAR%u I/O %lx+%lx collides with fixed ports or leaves 0x400-0xffff", dev, fn, idx, base,
              size);
    } else
        CHECK((base >= 0xC0000000UL && base + size <= 0xFEC00000UL) || base >= 0x100000000UL,
              "%02x.%u BAR%u memory %lx+%lx is outside the PCI windows", dev, fn, idx, base, size);
    CHECK(nbars < MAX_BARS, "too many BARs");
    bars[nbars++] = (struct bar){ (uint8_t)dev, (uint8_t)fn, (uint8_t)idx, io, base, size };
    return idx + (is64 ? 2 : 1);
}

/* pci-testdev header (QEMU hw/misc/pci-testdev.c): write a test number at 0, then do the
 * described write `count` times; the device counts the matching writes. */
struct testdev_ops {
    uint64_t base;
    bool io;
};
static uint32_t td_read(const struct testdev_ops *o, unsigned off, unsigned w)
{
    if (o->io)
        return w == 1 ? inb((uint16_t)(o->base + off)) : w == 2 ? inw((uint16_t)(o->base + off)) : inl((uint16_t)(o->base + off));
    return w == 1 ? mmio_read8(o->base + off) : w == 2 ? mmio_read16(o->base + off) : mmio_read32(o->base + off);
}
static void td_write(const struct testdev_ops *o, unsigned off, unsigned w, uint32_t v)
{
    if (o->io) {
        if (w == 1) outb((uint16_t)(o->base + off), (uint8_t)v);
        else if (w == 2) outw((uint16_t)(o->base + off), (uint16_t)v);
        else outl((uint16_t)(o->base + off), v);
    } else {
        if (w == 1) mmio_write8(o->base + off, (uint8_t)v);
        else if (w == 2) mmio_write16(o->base + off, (uint16_t)v);
        else mmio_write32(o->base + off, v);
    }
}

/* QEMU's pci-testdev speaks a protocol (hw/misc/pci-testdev.c): write a test number at 0, read
 * back a header naming the test, do the described write n times; the device counts them. */
static bool testdev_qemu_protocol(const struct testdev_ops *o, uint64_t bar_size, const char *kind)
{
    td_write(o, 0, 1, 0); /* test 0: no eventfd, every matching write is counted */
    char tname[17];
    for (unsigned i = 0; i < 16; i++)
        tname[i] = (char)td_read(o, 16 + i, 1);
    tname[16] = '\0';
    if (memcmp(tname, o->io ? "portio-" : "mmio-", o->io ? 7 : 5))
        return false;
    uint32_t width = td_read(o, 1, 1), offset = td_read(o, 4, 4), data = td_read(o, 8, 4);
    uint32_t count = td_read(o, 12, 4);
    rt_printf("testdev %s BAR: QEMU test \"%s\" width %u offset %x data %x\n", kind, tname, width, offset, data);
    CHECK(width == 1 || width == 2 || width == 4, "testdev %s BAR: test 0 width reads back as %u", kind, width);
    CHECK(count == 0, "testdev %s BAR: count is %u before any write", kind, count);
    CHECK(offset >= 16 && offset + width <= bar_size, "testdev %s BAR: test offset %x is outside the BAR", kind,
          offset);
    const unsigned n = 16;
    for (unsigned i = 0; i < n; i++)
        td_write(o, offset, width, data);
    count = td_read(o, 12, 4);
    CHECK(count == n, "testdev %s BAR: %u writes counted, want %u", kind, count, n);
    return true;
}

/* vmkit's pci-testdev: plain registers that read back what was written, at every width. */
static void testdev_readback(const struct testdev_ops *o, uint64_t bar_size, const char *kind)
{
    static const struct {
        unsigned off, width;
        uint32_t val;
    } pat[] = {
        { 0x00, 4, 0x12345678 }, { 0x04, 2, 0xbeef }, { 0x06, 1, 0x5a }, { 0x07, 1, 0xa5 },
        { 0x08, 4, 0xcafef00d }, { 0x10, 4, 0xffffffff }, { 0x14, 4, 0 },
    };
    for (unsigned i = 0; i < RT_ARRAY_SIZE(pat); i++)
        td_write(o, pat[i].off, pat[i].width, pat[i].val);
    uint32_t last = (uint32_t)(bar_size - 4);
    td_write(o, last, 4, 0x0badc0de);
    for (unsigned i = 0; i < RT_ARRAY_SIZE(pat); i++) {
        uint32_t v = td_read(o, pat[i].off, pat[i].width);
        CHECK(v == pat[i].val, "testdev %s BAR: offset %x width %u reads %x, wrote %x", kind, pat[i].off,
              pat[i].width, v, pat[i].val);
    }
    /* Narrow writes land in the right bytes of the wider register. */
    CHECK(td_read(o, 4, 4) == 0xa55abeef, "testdev %s BAR: dword at 4 reads %x, want a55abeef", kind,
          td_read(o, 4, 4));
    CHECK(td_read(o, last, 4) == 0x0badc0de, "testdev %s BAR: last dword (%x) does not read back", kind, last);
    rt_printf("testdev %s BAR: %u registers read back\n", kind, (unsigned)RT_ARRAY_SIZE(pat) + 1);
}

static void testdev_run(const struct testdev_ops *o, uint64_t bar_size)
{
    const char *kind = o->io ? "I/O" : "memory";
    CHECK(bar_size >= 64, "testdev %s BAR is only %lu bytes", kind, bar_size);
    if (!testdev_qemu_protocol(o, bar_size, kind))
        testdev_readback(o, bar_size, kind);
}

static void compare_cf8_ecam(void)
{
    unsigned present = 0;
    for (unsigned dev = 0; dev < 32; dev++) {
        for (unsigned fn = 0; fn < 8; fn++) {
            uint32_t a = pci_cf8_read32(0, dev, fn, 0), b = pci_ecam_read32(0, dev, fn, 0);
            CHECK(a == b, "00:%02x.%u: ID %08x through CF8 but %08x through ECAM", dev, fn, a, b);
            if ((a & 0xffff) == 0xffff) {
                if (fn == 0)
                    break;
                continue;
            }
            present++;
            uint32_t ca = pci_cf8_read32(0, dev, fn, 8), cb = pci_ecam_read32(0, dev, fn, 8);
            CHECK(ca == cb, "00:%02x.%u: class %08x through CF8 but %08x through ECAM", dev, fn, ca, cb);
            uint32_t ha = pci_cf8_read32(0, dev, fn, 0xc), hb = pci_ecam_read32(0, dev, fn, 0xc);
            CHECK((ha & 0xffff0000) == (hb & 0xffff0000), "00:%02x.%u: header differs", dev, fn);
            if (fn == 0 && !(ha & 0x800000))
                break;
        }
    }
    CHECK(present, "no device on bus 0");
    rt_printf("%u functions on bus 0, CF8 and ECAM agree\n", present);
}

void guest_main(void)
{
    if (acpi_init() < 0)
        test_fail("ACPI: %s", acpi.error);
    CHECK(pci_ecam_available(), "no ECAM: MCFG missing or unusable");
    compare_cf8_ecam();

    uint32_t hb = pci_cf8_read32(0, 0, 0, 8);
    CHECK((pci_cf8_read32(0, 0, 0, 0) & 0xffff) != 0xffff && hb >> 16 == 0x0600,
          "00:00.0 is not a host bridge (class %06x)", hb >> 8);

    int tdev = -1;
    for (unsigned dev = 0; dev < 32; dev++) {
        uint32_t id = pci_cf8_read32(0, dev, 0, 0);
        if ((id & 0xffff) == 0xffff)
            continue;
        uint8_t ht = (uint8_t)(pci_cf8_read32(0, dev, 0, 0xc) >> 16);
        for (unsigned fn = 0; fn < ((ht & 0x80) ? 8u : 1u); fn++) {
            uint32_t fid = pci_cf8_read32(0, dev, fn, 0);
            if ((fid & 0xffff) == 0xffff)
                continue;
            if ((pci_cf8_read32(0, dev, fn, 0xc) >> 16 & 0x7f) != 0)
                continue; /* bridges: only type 0 headers have six BARs */
            for (unsigned i = 0; i < 6;)
                i = bar_probe(dev, fn, i);
            if (fid == (TESTDEV_DEVICE << 16 | TESTDEV_VENDOR) && tdev < 0)
                tdev = (int)dev;
        }
    }
    CHECK(tdev >= 0, "no pci-testdev (%04x:%04x) on bus 0", TESTDEV_VENDOR, TESTDEV_DEVICE);
    for (unsigned i = 0; i < nbars; i++)
        for (unsigned j = 0; j < i; j++)
            CHECK(bars[i].io != bars[j].io || bars[i].base >= bars[j].base + bars[j].size ||
                      bars[j].base >= bars[i].base + bars[i].size,
                  "BAR%u of %02x.%u (%lx+%lx) overlaps BAR%u of %02x.%u (%lx+%lx)", bars[i].idx, bars[i].dev,
                  bars[i].fn, bars[i].base, bars[i].size, bars[j].idx, bars[j].dev, bars[j].fn, bars[j].base,
                  bars[j].size);
    rt_printf("%u BARs sized, none overlap\n", nbars);

    const struct bar *mem = NULL, *io = NULL;
    for (unsigned i = 0; i < nbars; i++) {
        if (bars[i].dev != tdev || bars[i].fn != 0)
            continue;
        if (bars[i].idx == 0 && !bars[i].io)
            mem = &bars[i];
        if (bars[i].idx == 1 && bars[i].io)
            io = &bars[i];
    }
    CHECK(mem, "pci-testdev BAR0 is not a memory BAR");
    CHECK(io, "pci-testdev BAR1 is not an I/O BAR");
    CHECK(mem->base + mem->size <= 0x100000000UL, "pci-testdev BAR0 at %lx is above 4 GiB", mem->base);
    pci_cf8_write16(0, (unsigned)tdev, 0, 4, pci_cf8_read16(0, (unsigned)tdev, 0, 4) | 3); /* I/O + memory decode */
    testdev_run(&(struct testdev_ops){ mem->base, false }, mem->size);
    testdev_run(&(struct testdev_ops){ io->base, true }, io->size);
}
