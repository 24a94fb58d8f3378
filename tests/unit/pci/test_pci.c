/* Unit tests for the PCI host bridge, device framework, INTx, MSI/MSI-X and BAR assignment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/util.h"
#include "hw/pci.h"
#include "machine/layout.h"
#include "machine/machine.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MMIO64_BASE (64 * GiB)

/* ---- A fake interrupt controller that records what devices asked for ---- */

struct fake_irq {
    bool level[IOAPIC_NUM_PINS];
    unsigned set_calls;
    struct {
        uint64_t addr;
        uint32_t data;
    } msi[64];
    unsigned nmsi;
};

static void fake_set_level(void *opaque, unsigned gsi, bool level)
{
    struct fake_irq *f = opaque;
    assert_true(gsi < IOAPIC_NUM_PINS);
    f->level[gsi] = level;
    f->set_calls++;
}

static void fake_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
    struct fake_irq *f = opaque;
    assert_true(f->nmsi < ARRAY_SIZE(f->msi));
    f->msi[f->nmsi].addr = addr;
    f->msi[f->nmsi].data = data;
    f->nmsi++;
}

static const struct irq_ops fake_irq_ops = {.set_level = fake_set_level,
                                            .send_msi = fake_send_msi};

/* ---- A test device with every kind of BAR; BAR accesses are recorded ---- */

struct tbar {
    unsigned index;
    uint64_t last_off, last_val;
    unsigned reads, writes;
};

struct tdev {
    struct pci_device pci;
    struct tbar bars[PCI_NUM_BARS];
    unsigned resets, hook_writes;
    unsigned msix_changes, msix_first, msix_last;
};

static uint64_t tbar_read(void *opaque, uint64_t off, unsigned size)
{
    struct tbar *b = opaque;
    b->reads++;
    b->last_off = off;
    return 0xa0000000u | b->index << 16 | (uint32_t)off;
}

static void tbar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct tbar *b = opaque;
    b->writes++;
    b->last_off = off;
    b->last_val = val;
}

static const struct bus_ops tbar_ops = {.read = tbar_read, .write = tbar_write};

static void tdev_reset(struct pci_device *d)
{
    container_of(d, struct tdev, pci)->resets++;
}

static void tdev_config_write(struct pci_device *d, unsigned off, unsigned size, uint32_t val)
{
    container_of(d, struct tdev, pci)->hook_writes++;
}

static void tdev_release(struct pci_device *d)
{
    free(container_of(d, struct tdev, pci));
}

static void tdev_msix_changed(struct pci_device *d, unsigned first, unsigned last)
{
    struct tdev *t = container_of(d, struct tdev, pci);
    t->msix_changes++;
    t->msix_first = first;
    t->msix_last = last;
}

static const struct pci_device_ops tdev_ops = {.reset = tdev_reset,
                                               .config_write = tdev_config_write,
                                               .msix_changed = tdev_msix_changed,
                                               .release = tdev_release};

/* BAR0 I/O 64 B, BAR1 mem32 4 KiB, BAR2-3 mem64 1 MiB, BAR4-5 mem64 prefetchable 16 KiB. */
static void tdev_init(struct tdev *t, unsigned pin)
{
    pci_device_init(&t->pci, "tdev", 0x1234, 0x5678, 0x020000, &tdev_ops);
    pci_device_set_irq_pin(&t->pci, pin);
    for (unsigned i = 0; i < PCI_NUM_BARS; i++)
        t->bars[i].index = i;
    assert_int_equal(pci_bar_init(&t->pci, 0, PCI_BAR_IO, 64, &tbar_ops, &t->bars[0]), 0);
    assert_int_equal(pci_bar_init(&t->pci, 1, PCI_BAR_MEM32, 4 * KiB, &tbar_ops, &t->bars[1]),
                     0);
    assert_int_equal(pci_bar_init(&t->pci, 2, PCI_BAR_MEM64, 1 * MiB, &tbar_ops, &t->bars[2]),
                     0);
    assert_int_equal(pci_bar_init(&t->pci, 4, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, 16 * KiB,
                                  &tbar_ops, &t->bars[4]),
                     0);
}

/* ---- Fixture ---- */

struct fx {
    struct machine m;
    struct fake_irq irq;
    struct pci_host *h;
};

static int setup(void **state)
{
    struct fx *f = xzalloc(sizeof(*f));
    machine_init(&f->m);
    f->m.irq = (struct irq_chip){&fake_irq_ops, &f->irq};
    f->h = pci_host_create(&f->m, MMIO64_BASE, LAYOUT_PCI_MMIO64_SIZE);
    assert_non_null(f->h);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    pci_host_destroy(f->h);
    machine_destroy(&f->m);
    free(f);
    return 0;
}

static uint64_t pio_in(struct fx *f, uint64_t port, unsigned size)
{
    uint64_t v;
    bus_read(&f->m.pio, port, size, &v);
    return v;
}

static void pio_out(struct fx *f, uint64_t port, unsigned size, uint64_t v)
{
    bus_write(&f->m.pio, port, size, v);
}

static uint64_t mmio_rd(struct fx *f, uint64_t addr, unsigned size)
{
    uint64_t v;
    bus_read(&f->m.mmio, addr, size, &v);
    return v;
}

static void mmio_wr(struct fx *f, uint64_t addr, unsigned size, uint64_t v)
{
    bus_write(&f->m.mmio, addr, size, v);
}

static uint32_t cf8_addr(unsigned bus, unsigned devfn, unsigned reg)
{
    return 0x80000000u | bus << 16 | devfn << 8 | (reg & 0xfc);
}

static uint32_t cfg_rd_cf8(struct fx *f, unsigned bus, unsigned devfn, unsigned reg,
                           unsigned size)
{
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, cf8_addr(bus, devfn, reg));
    return (uint32_t)pio_in(f, PORT_PCI_CONFIG_DATA + (reg & 3), size);
}

static void cfg_wr_cf8(struct fx *f, unsigned bus, unsigned devfn, unsigned reg, unsigned size,
                       uint32_t v)
{
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, cf8_addr(bus, devfn, reg));
    pio_out(f, PORT_PCI_CONFIG_DATA + (reg & 3), size, v);
}

static uint64_t ecam_addr(unsigned bus, unsigned devfn, unsigned reg)
{
    return LAYOUT_ECAM + ((uint64_t)bus << 20 | devfn << 12 | reg);
}

static uint32_t cfg_rd_ecam(struct fx *f, unsigned bus, unsigned devfn, unsigned reg,
                            unsigned size)
{
    return (uint32_t)mmio_rd(f, ecam_addr(bus, devfn, reg), size);
}

static void cfg_wr_ecam(struct fx *f, unsigned bus, unsigned devfn, unsigned reg, unsigned size,
                        uint32_t v)
{
    mmio_wr(f, ecam_addr(bus, devfn, reg), size, v);
}

static const struct bus_range *range_at(const struct bus *b, uint64_t addr)
{
    return bus_find(b, addr);
}

/* ---- Tests ---- */

static void test_host_bridge_ids(void **state)
{
    struct fx *f = *state;
    assert_int_equal(cfg_rd_cf8(f, 0, 0, PCI_VENDOR_ID, 2), 0x1b36);
    assert_int_equal(cfg_rd_cf8(f, 0, 0, PCI_DEVICE_ID, 2), 0x0008);
    assert_int_equal(cfg_rd_cf8(f, 0, 0, PCI_REVISION_ID, 4) >> 8, 0x060000);
    assert_int_equal(cfg_rd_ecam(f, 0, 0, PCI_HEADER_TYPE, 1), 0);
    assert_int_equal(cfg_rd_ecam(f, 0, 0, 0, 4), 0x00081b36);
    /* CONFIG_ADDRESS reads back, without the reserved and low bits. */
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, 0xffffffff);
    assert_int_equal(pio_in(f, PORT_PCI_CONFIG_ADDR, 4), 0x80fffffc);
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, 0x80000000);
    /* Linux's type-1 probe writes a byte to 0xCFB first: it must not disturb the address. */
    pio_out(f, 0xcfb, 1, 0x01);
    assert_int_equal(pio_in(f, PORT_PCI_CONFIG_ADDR, 4), 0x80000000);
}

static void test_cf8_and_ecam_agree(void **state)
{
    struct fx *f = *state;
    struct pci_device *td = pci_testdev_create(f->h);
    assert_non_null(td);
    unsigned devfn = td->devfn;
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0, 4), 0x00051b36);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_REVISION_ID, 4) >> 8, 0x00ff00);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_INTERRUPT_PIN, 1), 1);
    pci_assign_resources(f->h); /* so the header is not all zeros */
    static const unsigned sizes[] = {1, 2, 4};
    for (unsigned reg = 0; reg < 0x40; reg += 4) {
        for (unsigned s = 0; s < 3; s++) {
            for (unsigned o = 0; o + sizes[s] <= 4; o++) {
                uint32_t a = cfg_rd_cf8(f, 0, devfn, reg + o, sizes[s]);
                uint32_t b = cfg_rd_ecam(f, 0, devfn, reg + o, sizes[s]);
                uint32_t c = pci_config_read(f->h, 0, devfn, reg + o, sizes[s]);
                assert_int_equal(a, b);
                assert_int_equal(a, c);
                uint32_t dw = pci_config_read(f->h, 0, devfn, reg, 4);
                uint32_t mask = sizes[s] == 4 ? 0xffffffffu : (1u << (8 * sizes[s])) - 1;
                assert_int_equal(a, (dw >> (8 * o)) & mask);
            }
        }
    }
    /* Writes through either mechanism land in the same register, at any byte offset. */
    cfg_wr_cf8(f, 0, devfn, PCI_INTERRUPT_LINE, 1, 0x5a);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_INTERRUPT_LINE, 1), 0x5a);
    cfg_wr_ecam(f, 0, devfn, PCI_CACHE_LINE_SIZE, 1, 0x10);
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, PCI_CACHE_LINE_SIZE, 1), 0x10);
    cfg_wr_cf8(f, 0, devfn, PCI_COMMAND + 1, 1, PCI_COMMAND_INTX_DISABLE >> 8);
    assert_true(cfg_rd_ecam(f, 0, devfn, PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE);
    cfg_wr_ecam(f, 0, devfn, PCI_COMMAND, 2, 0);
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, PCI_COMMAND, 2), 0);
    /* A 2-byte write at offset 2 within the dword (port 0xCFE): BAR0's upper address bits. */
    cfg_wr_cf8(f, 0, devfn, PCI_BASE_ADDRESS_0 + 2, 2, 0xc123);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_BASE_ADDRESS_0, 4), 0xc1230000);
    /* A word write over the line and the read-only pin changes only the line. */
    cfg_wr_cf8(f, 0, devfn, PCI_INTERRUPT_LINE, 2, 0x0433);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_INTERRUPT_LINE, 1), 0x33);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_INTERRUPT_PIN, 1), 1);
}

static void test_empty_slots_all_ones(void **state)
{
    struct fx *f = *state;
    for (unsigned slot = 1; slot < 32; slot++) {
        assert_int_equal(cfg_rd_cf8(f, 0, PCI_DEVFN(slot, 0), 0, 2), 0xffff);
        assert_int_equal(cfg_rd_cf8(f, 0, PCI_DEVFN(slot, 0), 0, 4), 0xffffffff);
        assert_int_equal(cfg_rd_ecam(f, 0, PCI_DEVFN(slot, 0), 0, 4), 0xffffffff);
        assert_int_equal(cfg_rd_ecam(f, 0, PCI_DEVFN(slot, 0), 0, 1), 0xff);
    }
    /* Function 1 of the bridge, other buses, and the last byte of ECAM. */
    assert_int_equal(cfg_rd_ecam(f, 0, PCI_DEVFN(0, 1), 0, 4), 0xffffffff);
    assert_int_equal(cfg_rd_cf8(f, 1, 0, 0, 4), 0xffffffff);
    assert_int_equal(cfg_rd_ecam(f, 255, 255, 0xffc, 4), 0xffffffff);
    assert_int_equal(cfg_rd_ecam(f, 1, 0, 0, 2), 0xffff);
    /* With the enable bit clear, CONFIG_DATA is open bus. */
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, 0);
    assert_int_equal(pio_in(f, PORT_PCI_CONFIG_DATA, 4), 0xffffffff);
    /* Writes to absent functions go nowhere and do not crash. */
    cfg_wr_ecam(f, 3, 7, 0x10, 4, 0x1234);
    cfg_wr_cf8(f, 0, PCI_DEVFN(9, 0), 0x04, 2, 7);
    assert_int_equal(cfg_rd_cf8(f, 0, PCI_DEVFN(9, 0), 0x04, 2), 0xffff);
}

static void test_bar_sizing(void **state)
{
    struct fx *f = *state;
    struct tdev *t = xzalloc(sizeof(*t));
    tdev_init(t, 1);
    assert_int_equal(pci_device_register(f->h, &t->pci, 4), 0);
    unsigned devfn = PCI_DEVFN(4, 0);
    /* Flag bits before sizing. */
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x10, 4), 0x1);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x14, 4), 0x0);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x18, 4), 0x4);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x20, 4), 0xc);
    /* Sizing with decoding on (Linux turns it off, others may not): nothing may appear. */
    cfg_wr_ecam(f, 0, devfn, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    unsigned mmio_before = f->m.mmio.count, pio_before = f->m.pio.count;
    for (unsigned reg = 0x10; reg < 0x28; reg += 4)
        cfg_wr_cf8(f, 0, devfn, reg, 4, 0xffffffff);
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0x10, 4), 0xffffffc1); /* I/O, 64 B */
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0x14, 4), 0xfffff000); /* mem32, 4 KiB */
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0x18, 4), 0xfff00004); /* mem64, 1 MiB */
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0x1c, 4), 0xffffffff);
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0x20, 4), 0xffffc00c); /* mem64 pref, 16 KiB */
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0x24, 4), 0xffffffff);
    assert_int_equal(f->m.mmio.count, mmio_before);
    assert_int_equal(f->m.pio.count, pio_before);
    /* The ROM BAR and BARs a device lacks size to zero. */
    cfg_wr_ecam(f, 0, devfn, PCI_ROM_ADDRESS, 4, 0xffffffff);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_ROM_ADDRESS, 4), 0);
    struct pci_device *td = pci_testdev_create(f->h);
    for (unsigned reg = 0x18; reg < 0x28; reg += 4) {
        cfg_wr_ecam(f, 0, td->devfn, reg, 4, 0xffffffff);
        assert_int_equal(cfg_rd_ecam(f, 0, td->devfn, reg, 4), 0);
    }
    cfg_wr_ecam(f, 0, td->devfn, 0x10, 4, 0xffffffff);
    cfg_wr_ecam(f, 0, td->devfn, 0x14, 4, 0xffffffff);
    assert_int_equal(cfg_rd_ecam(f, 0, td->devfn, 0x10, 4), 0xfffff000);
    assert_int_equal(cfg_rd_ecam(f, 0, td->devfn, 0x14, 4), 0xffffff01);
    /* Bad declarations are refused. */
    struct pci_device bad;
    pci_device_init(&bad, "bad", 1, 2, 0, NULL);
    assert_int_equal(pci_bar_init(&bad, 0, PCI_BAR_MEM32, 3000, NULL, NULL), -EINVAL);
    assert_int_equal(pci_bar_init(&bad, 5, PCI_BAR_MEM64, 4096, NULL, NULL), -EINVAL);
    assert_int_equal(pci_bar_init(&bad, 0, PCI_BAR_IO | PCI_BAR_PREFETCH, 16, NULL, NULL),
                     -EINVAL);
    assert_int_equal(pci_bar_init(&bad, 0, PCI_BAR_MEM64, 4096, NULL, NULL), 0);
    assert_int_equal(pci_bar_init(&bad, 1, PCI_BAR_MEM32, 4096, NULL, NULL), -EINVAL);
}

struct placed {
    uint64_t base, size;
};

static int placed_cmp(const void *a, const void *b)
{
    const struct placed *x = a, *y = b;
    return x->base < y->base ? -1 : x->base > y->base;
}

static uint64_t bar_addr(struct fx *f, struct pci_device *d, unsigned bar)
{
    uint32_t lo = pci_config_read(f->h, 0, d->devfn, 0x10 + 4 * bar, 4);
    if (lo & PCI_BASE_ADDRESS_SPACE_IO)
        return lo & ~3u;
    uint64_t a = lo & ~0xfu;
    if (lo & PCI_BASE_ADDRESS_MEM_TYPE_64)
        a |= (uint64_t)pci_config_read(f->h, 0, d->devfn, 0x14 + 4 * bar, 4) << 32;
    return a;
}

static void test_assignment(void **state)
{
    struct fx *f = *state;
    struct tdev *t[3];
    for (unsigned i = 0; i < 3; i++) {
        t[i] = xzalloc(sizeof(*t[i]));
        tdev_init(t[i], 1 + i);
        assert_int_equal(pci_device_register(f->h, &t[i]->pci, -1), 0);
    }
    struct pci_device *td = pci_testdev_create(f->h);
    assert_non_null(td);
    assert_int_equal(pci_assign_resources(f->h), 0);

    struct pci_windows w;
    pci_host_get_windows(f->h, &w);
    assert_int_equal(w.io_base, 0x1000);
    assert_int_equal(w.io_base + w.io_size, 0x10000);
    assert_int_equal(w.mmio32_base, LAYOUT_PCI_MMIO);
    assert_int_equal(w.mmio64_base, MMIO64_BASE);
    assert_int_equal(w.ecam_base, LAYOUT_ECAM);

    struct placed io[8], mem[16];
    unsigned nio = 0, nmem = 0;
    for (unsigned i = 0; i < 4; i++) {
        struct pci_device *d = i < 3 ? &t[i]->pci : td;
        uint16_t cmd = pci_config_read(f->h, 0, d->devfn, PCI_COMMAND, 2);
        assert_int_equal(cmd & 7, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
        assert_int_equal(pci_config_read(f->h, 0, d->devfn, PCI_INTERRUPT_LINE, 1),
                         pci_device_gsi(d));
        for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
            const struct pci_bar *bar = &d->bars[b];
            if (!bar->kind)
                continue;
            uint64_t a = bar_addr(f, d, b);
            assert_true(IS_ALIGNED(a, bar->size));
            assert_true(bar->mapped);
            assert_int_equal(bar->addr, a);
            if (bar->kind & PCI_BAR_IO) {
                assert_true(a >= w.io_base && a + bar->size <= w.io_base + w.io_size);
                const struct bus_range *r = range_at(&f->m.pio, a);
                assert_non_null(r);
                assert_int_equal(r->base, a);
                assert_int_equal(r->len, bar->size);
                io[nio++] = (struct placed){a, bar->size};
            } else {
                if (bar->kind & PCI_BAR_MEM64)
                    assert_true(a >= w.mmio64_base &&
                                a + bar->size <= w.mmio64_base + w.mmio64_size);
                else
                    assert_true(a >= w.mmio32_base &&
                                a + bar->size <= w.mmio32_base + w.mmio32_size);
                const struct bus_range *r = range_at(&f->m.mmio, a);
                assert_non_null(r);
                assert_int_equal(r->base, a);
                assert_int_equal(r->len, bar->size);
                mem[nmem++] = (struct placed){a, bar->size};
            }
        }
    }
    assert_int_equal(nio, 4);
    assert_int_equal(nmem, 10);
    qsort(io, nio, sizeof(*io), placed_cmp);
    qsort(mem, nmem, sizeof(*mem), placed_cmp);
    for (unsigned i = 1; i < nio; i++)
        assert_true(io[i - 1].base + io[i - 1].size <= io[i].base);
    for (unsigned i = 1; i < nmem; i++)
        assert_true(mem[i - 1].base + mem[i - 1].size <= mem[i].base);

    /* Accesses reach the right BAR of the right device, with BAR-relative offsets. */
    uint64_t a1 = bar_addr(f, &t[1]->pci, 2);
    assert_int_equal(mmio_rd(f, a1 + 0x40, 4), 0xa0020040);
    mmio_wr(f, a1 + 0x18, 8, 0x1122334455667788ULL);
    assert_int_equal(t[1]->bars[2].writes, 1);
    assert_int_equal(t[1]->bars[2].last_off, 0x18);
    assert_int_equal(t[1]->bars[2].last_val, 0x1122334455667788ULL);
    uint64_t io0 = bar_addr(f, &t[0]->pci, 0);
    assert_int_equal(pio_in(f, io0 + 3, 1), 0x03);
    /* pci-testdev registers read back what was written. */
    uint64_t tm = bar_addr(f, td, 0), tio = bar_addr(f, td, 1);
    mmio_wr(f, tm + 0x100, 4, 0xdeadbeef);
    assert_int_equal(mmio_rd(f, tm + 0x100, 4), 0xdeadbeef);
    assert_int_equal(mmio_rd(f, tm + 0x102, 2), 0xdead);
    pio_out(f, tio + 0xfe, 2, 0x4242);
    assert_int_equal(pio_in(f, tio + 0xfe, 2), 0x4242);
    assert_int_equal(pio_in(f, tio + 0xff, 1), 0x42);

    /* Assignment is repeatable: same layout the second time. */
    uint64_t before = bar_addr(f, &t[2]->pci, 4);
    assert_int_equal(pci_assign_resources(f->h), 0);
    assert_int_equal(bar_addr(f, &t[2]->pci, 4), before);
}

static void test_assignment_without_64bit_window_and_full(void **state)
{
    struct machine m;
    struct fake_irq irq = {0};
    machine_init(&m);
    m.irq = (struct irq_chip){&fake_irq_ops, &irq};
    struct pci_host *h = pci_host_create(&m, 0, 0);
    struct tdev *t = xzalloc(sizeof(*t));
    tdev_init(t, 1);
    assert_int_equal(pci_device_register(h, &t->pci, 7), 0);
    assert_int_equal(pci_assign_resources(h), 0);
    uint64_t a = pci_config_read(h, 0, t->pci.devfn, 0x18, 4) & ~0xfu;
    assert_int_equal(pci_config_read(h, 0, t->pci.devfn, 0x1c, 4), 0);
    assert_true(a >= LAYOUT_PCI_MMIO && a + MiB <= LAYOUT_PCI_MMIO + LAYOUT_PCI_MMIO_SIZE);
    pci_host_destroy(h);
    machine_destroy(&m);

    /* A window whose base is not aligned for the BAR: the BAR is still naturally aligned. */
    machine_init(&m);
    m.irq = (struct irq_chip){&fake_irq_ops, &irq};
    h = pci_host_create(&m, MMIO64_BASE + 4 * KiB, 64 * MiB);
    t = xzalloc(sizeof(*t));
    tdev_init(t, 1);
    assert_int_equal(pci_device_register(h, &t->pci, 2), 0);
    assert_int_equal(pci_assign_resources(h), 0);
    assert_int_equal(t->pci.bars[2].addr, MMIO64_BASE + 1 * MiB);
    assert_true(t->pci.bars[4].addr >= MMIO64_BASE + 4 * KiB);
    assert_true(IS_ALIGNED(t->pci.bars[4].addr, 16 * KiB));
    pci_host_destroy(h);
    machine_destroy(&m);

    /* A 64-bit window too small for two 1 MiB BARs: the second one stays unassigned. */
    machine_init(&m);
    m.irq = (struct irq_chip){&fake_irq_ops, &irq};
    h = pci_host_create(&m, MMIO64_BASE, 1 * MiB + 16 * KiB + 16 * KiB);
    struct tdev *u[2];
    for (unsigned i = 0; i < 2; i++) {
        u[i] = xzalloc(sizeof(*u[i]));
        tdev_init(u[i], 1);
        assert_int_equal(pci_device_register(h, &u[i]->pci, -1), 0);
    }
    assert_int_equal(pci_assign_resources(h), -ENOSPC);
    assert_true(u[0]->pci.bars[2].mapped);
    assert_false(u[1]->pci.bars[2].mapped);
    assert_true(u[1]->pci.bars[4].mapped);
    pci_host_destroy(h);
    machine_destroy(&m);
}

static void test_command_toggles_mappings(void **state)
{
    struct fx *f = *state;
    struct pci_device *td = pci_testdev_create(f->h);
    assert_int_equal(pci_assign_resources(f->h), 0);
    uint64_t mem = bar_addr(f, td, 0), io = bar_addr(f, td, 1);
    uint64_t v;
    assert_true(bus_read(&f->m.mmio, mem, 4, &v));
    assert_true(bus_read(&f->m.pio, io, 4, &v));
    uint16_t cmd = pci_config_read(f->h, 0, td->devfn, PCI_COMMAND, 2);

    cfg_wr_cf8(f, 0, td->devfn, PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MEMORY);
    assert_false(bus_read(&f->m.mmio, mem, 4, &v));
    assert_true(bus_read(&f->m.pio, io, 4, &v));
    assert_false(td->bars[0].mapped);

    cfg_wr_cf8(f, 0, td->devfn, PCI_COMMAND, 2, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
    assert_false(bus_read(&f->m.pio, io, 4, &v));

    cfg_wr_cf8(f, 0, td->devfn, PCI_COMMAND, 1, cmd);
    assert_true(bus_read(&f->m.mmio, mem, 4, &v));
    assert_true(bus_read(&f->m.pio, io, 4, &v));

    /* Toggling again keeps exactly one registration per BAR. */
    unsigned count = f->m.mmio.count;
    cfg_wr_cf8(f, 0, td->devfn, PCI_COMMAND, 2, cmd);
    assert_int_equal(f->m.mmio.count, count);
}

static void test_bar_move(void **state)
{
    struct fx *f = *state;
    struct pci_device *td = pci_testdev_create(f->h);
    assert_int_equal(pci_assign_resources(f->h), 0);
    uint64_t mem = bar_addr(f, td, 0), io = bar_addr(f, td, 1);
    mmio_wr(f, mem + 8, 4, 0xcafe);
    uint64_t nmem = LAYOUT_PCI_MMIO + 0x100000, nio = 0x8000;
    cfg_wr_ecam(f, 0, td->devfn, 0x10, 4, (uint32_t)nmem);
    cfg_wr_ecam(f, 0, td->devfn, 0x14, 2, (uint32_t)nio); /* a 16-bit write moves it too */
    uint64_t v;
    assert_false(bus_read(&f->m.mmio, mem, 4, &v));
    assert_false(bus_read(&f->m.pio, io, 1, &v));
    assert_true(bus_read(&f->m.mmio, nmem + 8, 4, &v));
    assert_int_equal(v, 0xcafe);
    assert_true(bus_read(&f->m.pio, nio, 1, &v));
    assert_int_equal(td->bars[0].addr, nmem);
    assert_int_equal(td->bars[1].addr, nio);

    /* 64-bit BAR move: both halves. */
    struct tdev *t = xzalloc(sizeof(*t));
    tdev_init(t, 1);
    assert_int_equal(pci_device_register(f->h, &t->pci, -1), 0);
    assert_int_equal(pci_assign_resources(f->h), 0);
    uint64_t dst = MMIO64_BASE + 16 * GiB;
    cfg_wr_ecam(f, 0, t->pci.devfn, 0x18, 4, (uint32_t)dst);
    cfg_wr_ecam(f, 0, t->pci.devfn, 0x1c, 4, (uint32_t)(dst >> 32));
    assert_true(t->pci.bars[2].mapped);
    assert_int_equal(t->pci.bars[2].addr, dst);
    assert_int_equal(mmio_rd(f, dst + 4, 4), 0xa0020004);
}

static void test_intx(void **state)
{
    struct fx *f = *state;
    struct tdev *a = xzalloc(sizeof(*a)), *b = xzalloc(sizeof(*b)), *c = xzalloc(sizeof(*c));
    tdev_init(a, 1); /* slot 1 INTA -> 16 + (1 + 0) & 3 = 17 */
    tdev_init(b, 1); /* slot 5 INTA -> 16 + (5 + 0) & 3 = 17: shares a's line */
    tdev_init(c, 2); /* slot 3 INTB -> 16 + (3 + 1) & 3 = 16 */
    assert_int_equal(pci_device_register(f->h, &a->pci, 1), 0);
    assert_int_equal(pci_device_register(f->h, &b->pci, 5), 0);
    assert_int_equal(pci_device_register(f->h, &c->pci, 3), 0);
    assert_int_equal(pci_device_register(f->h, &c->pci, 4), -EINVAL); /* already plugged */
    assert_int_equal(pci_device_gsi(&a->pci), 17);
    assert_int_equal(pci_device_gsi(&b->pci), 17);
    assert_int_equal(pci_device_gsi(&c->pci), 16);
    for (unsigned slot = 0; slot < 32; slot++)
        for (unsigned pin = 1; pin <= 4; pin++) {
            struct pci_device d = {.devfn = PCI_DEVFN(slot, 0)};
            d.config[PCI_INTERRUPT_PIN] = (uint8_t)pin;
            /* The ACPI _PRT formula: 16 + ((slot + pin_index) & 3). */
            assert_int_equal(pci_device_gsi(&d), 16 + ((slot + pin - 1) & 3));
        }

    pci_set_irq(&c->pci, true);
    assert_true(f->irq.level[16]);
    assert_true(pci_config_read(f->h, 0, c->pci.devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    /* Guests cannot clear the status bit by writing it. */
    cfg_wr_ecam(f, 0, c->pci.devfn, PCI_STATUS, 2, 0xffff);
    assert_true(pci_config_read(f->h, 0, c->pci.devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    /* INTx disable drops the line but not the status bit; clearing it raises the line again. */
    cfg_wr_ecam(f, 0, c->pci.devfn, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    assert_false(f->irq.level[16]);
    assert_true(pci_config_read(f->h, 0, c->pci.devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    pci_set_irq(&c->pci, true);
    assert_false(f->irq.level[16]);
    cfg_wr_ecam(f, 0, c->pci.devfn, PCI_COMMAND, 2, 0);
    assert_true(f->irq.level[16]);
    pci_set_irq(&c->pci, false);
    assert_false(f->irq.level[16]);
    assert_false(pci_config_read(f->h, 0, c->pci.devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);

    /* A shared line stays up until the last device lets go. */
    pci_set_irq(&a->pci, true);
    pci_set_irq(&b->pci, true);
    assert_true(f->irq.level[17]);
    pci_set_irq(&a->pci, false);
    assert_true(f->irq.level[17]);
    pci_set_irq(&a->pci, false); /* repeated deassert must not steal b's reference */
    assert_true(f->irq.level[17]);
    pci_set_irq(&b->pci, false);
    assert_false(f->irq.level[17]);
    assert_false(f->irq.level[16]);
    /* A device with no pin never touches a line. */
    unsigned calls = f->irq.set_calls;
    struct tdev *n = xzalloc(sizeof(*n));
    tdev_init(n, 0);
    assert_int_equal(pci_device_register(f->h, &n->pci, -1), 0);
    pci_set_irq(&n->pci, true);
    assert_int_equal(f->irq.set_calls, calls);
    assert_int_equal(pci_device_gsi(&n->pci), -1);
}

/* A device with MSI-X in BAR1 (created by pci_msix_init) and MSI. */
static struct tdev *msix_dev(struct fx *f, unsigned nvec)
{
    struct tdev *t = xzalloc(sizeof(*t));
    pci_device_init(&t->pci, "msixdev", 0x1234, 0x1111, 0x020000, &tdev_ops);
    t->bars[0].index = 0;
    assert_int_equal(pci_bar_init(&t->pci, 0, PCI_BAR_MEM32, 4 * KiB, &tbar_ops, &t->bars[0]),
                     0);
    int cap = pci_msix_init(&t->pci, nvec, 1, 0, 0x800);
    assert_true(cap >= 0x40);
    assert_int_equal(pci_device_register(f->h, &t->pci, -1), 0);
    assert_int_equal(pci_assign_resources(f->h), 0);
    return t;
}

static void msix_program(struct fx *f, uint64_t table, unsigned v, uint64_t addr, uint32_t data,
                         bool masked)
{
    mmio_wr(f, table + 16 * v, 4, (uint32_t)addr);
    mmio_wr(f, table + 16 * v + 4, 4, addr >> 32);
    mmio_wr(f, table + 16 * v + 8, 4, data);
    mmio_wr(f, table + 16 * v + 12, 4, masked);
}

static void test_msix(void **state)
{
    struct fx *f = *state;
    struct tdev *t = msix_dev(f, 70);
    struct pci_device *d = &t->pci;
    unsigned cap = pci_find_capability(d, PCI_CAP_ID_MSIX);
    assert_int_equal(cap, d->msix_cap);
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, cap + 2, 2), 69); /* table size - 1 */
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, cap + 4, 4), 0x000 | 1);
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, cap + 8, 4), 0x800 | 1);
    assert_int_equal(d->bars[1].size, 4 * KiB);
    uint64_t bar = bar_addr(f, d, 1);
    assert_true(d->bars[1].mapped);

    /* Power-on: every vector masked, nothing pending. */
    for (unsigned v = 0; v < 70; v++)
        assert_int_equal(mmio_rd(f, bar + 16 * v + 12, 4), 1);
    /* Disabled: notify does nothing at all. */
    pci_msix_notify(d, 0);
    assert_int_equal(f->irq.nmsi, 0);
    assert_false(pci_msix_pending(d, 0));

    msix_program(f, bar, 0, 0xfee00000, 0x4041, false);
    unsigned changes = t->msix_changes;
    msix_program(f, bar, 65, 0xfee01000, 0x4065, true);
    /* The device hears about reprogrammed vectors (irqfd routing) and can read them back. */
    assert_int_equal(t->msix_changes, changes + 4);
    assert_int_equal(t->msix_first, 65);
    assert_int_equal(t->msix_last, 65);
    uint64_t maddr;
    uint32_t mdata;
    assert_int_equal(pci_msix_message(d, 65, &maddr, &mdata), 0);
    assert_int_equal(maddr, 0xfee01000);
    assert_int_equal(mdata, 0x4065);
    assert_int_equal(pci_msix_message(d, 70, &maddr, &mdata), -EINVAL);
    assert_true(pci_msix_vector_masked(d, 65));
    /* An 8-byte write spanning two entries reports both. */
    mmio_wr(f, bar + 16 * 3 + 8, 8, 0x0000000100004043ULL);
    mmio_wr(f, bar + 16 * 3 + 12, 8, 0x0000000000000001ULL);
    assert_int_equal(t->msix_first, 3);
    assert_int_equal(t->msix_last, 4);
    assert_int_equal(mmio_rd(f, bar + 8, 4), 0x4041);
    assert_int_equal(mmio_rd(f, bar + 0, 8), 0xfee00000);
    /* Reserved vector-control bits read as zero. */
    mmio_wr(f, bar + 12, 4, 0xfffffffe);
    assert_int_equal(mmio_rd(f, bar + 12, 4), 0);

    changes = t->msix_changes;
    cfg_wr_ecam(f, 0, d->devfn, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    assert_true(pci_msix_enabled(d));
    assert_int_equal(t->msix_changes, changes + 1);
    assert_int_equal(t->msix_first, 0);
    assert_int_equal(t->msix_last, 69);
    /* The table size field is read-only. */
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, cap + 2, 2) & 0x7ff, 69);

    pci_msix_notify(d, 0);
    assert_int_equal(f->irq.nmsi, 1);
    assert_int_equal(f->irq.msi[0].addr, 0xfee00000);
    assert_int_equal(f->irq.msi[0].data, 0x4041);

    /* A masked vector goes pending (visible in the PBA) and fires on unmask. */
    pci_msix_notify(d, 65);
    assert_int_equal(f->irq.nmsi, 1);
    assert_true(pci_msix_pending(d, 65));
    assert_int_equal(mmio_rd(f, bar + 0x808, 8), 1ULL << 1);
    assert_int_equal(mmio_rd(f, bar + 0x808, 4), 2);
    mmio_wr(f, bar + 0x808, 8, 0); /* the PBA is read-only */
    assert_true(pci_msix_pending(d, 65));
    mmio_wr(f, bar + 16 * 65 + 12, 4, 0);
    assert_int_equal(f->irq.nmsi, 2);
    assert_int_equal(f->irq.msi[1].addr, 0xfee01000);
    assert_int_equal(f->irq.msi[1].data, 0x4065);
    assert_false(pci_msix_pending(d, 65));
    assert_int_equal(mmio_rd(f, bar + 0x808, 8), 0);

    /* Function mask holds everything; clearing it releases the pending vector once. */
    cfg_wr_ecam(f, 0, d->devfn, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    pci_msix_notify(d, 0);
    pci_msix_notify(d, 0);
    assert_int_equal(f->irq.nmsi, 2);
    assert_true(pci_msix_pending(d, 0));
    assert_true(pci_msix_vector_masked(d, 0));
    cfg_wr_ecam(f, 0, d->devfn, cap + 3, 1, PCI_MSIX_FLAGS_ENABLE >> 8);
    assert_int_equal(f->irq.nmsi, 3);
    assert_int_equal(f->irq.msi[2].data, 0x4041);
    assert_false(pci_msix_pending(d, 0));

    /* No bus mastering, no MSI. */
    uint16_t cmd = pci_config_read(f->h, 0, d->devfn, PCI_COMMAND, 2);
    cfg_wr_ecam(f, 0, d->devfn, PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MASTER);
    pci_msix_notify(d, 0);
    assert_int_equal(f->irq.nmsi, 3);
    cfg_wr_ecam(f, 0, d->devfn, PCI_COMMAND, 2, cmd);

    /* Out-of-range vectors are ignored. */
    pci_msix_notify(d, 70);
    pci_msix_notify(d, 5000);
    assert_int_equal(f->irq.nmsi, 3);

    /* The rest of the BAR is not the device's (it has no ops there): harmless. */
    assert_int_equal(mmio_rd(f, bar + 0xff0, 4), 0);
    mmio_wr(f, bar + 0xff0, 4, 1);
    /* The device's own BAR0 is untouched by MSI-X. */
    uint64_t b0 = bar_addr(f, d, 0);
    assert_int_equal(mmio_rd(f, b0, 4), 0xa0000000);

    /* Disable: pending state no longer delivers. */
    cfg_wr_ecam(f, 0, d->devfn, cap + 2, 2, 0);
    pci_msix_notify(d, 0);
    assert_int_equal(f->irq.nmsi, 3);

    /* Bad parameters are refused. */
    struct pci_device bad;
    pci_device_init(&bad, "bad", 1, 2, 0, NULL);
    assert_int_equal(pci_msix_init(&bad, 0, 1, 0, 0x800), -EINVAL);
    assert_int_equal(pci_msix_init(&bad, 2049, 1, 0, 0x800), -EINVAL);
    assert_int_equal(pci_msix_init(&bad, 8, 1, 4, 0x800), -EINVAL);   /* misaligned */
    assert_int_equal(pci_msix_init(&bad, 8, 1, 0, 0x40), -EINVAL);    /* PBA inside table */
    assert_int_equal(pci_bar_init(&bad, 0, PCI_BAR_IO, 16, NULL, NULL), 0);
    assert_int_equal(pci_msix_init(&bad, 8, 0, 0, 0x800), -EINVAL);   /* I/O BAR */
}

static void test_msix_shared_bar(void **state)
{
    /* Table and PBA inside a BAR the device also uses: the rest still reaches the device. */
    struct fx *f = *state;
    struct tdev *t = xzalloc(sizeof(*t));
    pci_device_init(&t->pci, "shared", 0x1234, 0x2222, 0x020000, &tdev_ops);
    t->bars[2].index = 2;
    assert_int_equal(pci_bar_init(&t->pci, 2, PCI_BAR_MEM64, 16 * KiB, &tbar_ops, &t->bars[2]),
                     0);
    assert_true(pci_msix_init(&t->pci, 4, 2, 0x2000, 0x3000) > 0);
    assert_int_equal(pci_msix_init(&t->pci, 4, 2, 0x2000, 0x3000), -EINVAL); /* twice */
    assert_int_equal(pci_device_register(f->h, &t->pci, -1), 0);
    assert_int_equal(pci_assign_resources(f->h), 0);
    uint64_t bar = bar_addr(f, &t->pci, 2);
    assert_int_equal(mmio_rd(f, bar + 0x10, 4), 0xa0020010);
    assert_int_equal(mmio_rd(f, bar + 0x200c, 4), 1); /* vector 0 control: masked */
    unsigned writes = t->bars[2].writes;
    mmio_wr(f, bar + 0x2000, 4, 0xfee00000);
    assert_int_equal(t->bars[2].writes, writes);
    mmio_wr(f, bar + 0x1000, 4, 7);
    assert_int_equal(t->bars[2].writes, writes + 1);
}

static void test_msi(void **state)
{
    struct fx *f = *state;
    struct tdev *t = xzalloc(sizeof(*t));
    pci_device_init(&t->pci, "msidev", 0x1234, 0x3333, 0x020000, &tdev_ops);
    int cap = pci_msi_init(&t->pci, 4, true);
    assert_true(cap >= 0x40);
    assert_int_equal(pci_msi_init(&t->pci, 4, true), -EINVAL);
    assert_int_equal(pci_device_register(f->h, &t->pci, -1), 0);
    assert_int_equal(pci_assign_resources(f->h), 0);
    struct pci_device *d = &t->pci;
    unsigned c = (unsigned)cap;
    uint16_t flags = pci_config_read(f->h, 0, d->devfn, c + 2, 2);
    assert_int_equal(flags & (PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | PCI_MSI_FLAGS_QMASK),
                     PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | (2 << 1));
    pci_msi_notify(d, 0);
    assert_int_equal(f->irq.nmsi, 0);

    cfg_wr_ecam(f, 0, d->devfn, c + 4, 4, 0xfee00003); /* low two bits are read-only zero */
    cfg_wr_ecam(f, 0, d->devfn, c + 8, 4, 0);
    cfg_wr_ecam(f, 0, d->devfn, c + 12, 2, 0x4060);
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, c + 4, 4), 0xfee00000);
    /* Enable 4 vectors (QSIZE 2). */
    cfg_wr_ecam(f, 0, d->devfn, c + 2, 2, PCI_MSI_FLAGS_ENABLE | (2 << 4));
    assert_true(pci_msi_enabled(d));
    pci_msi_notify(d, 3);
    assert_int_equal(f->irq.nmsi, 1);
    assert_int_equal(f->irq.msi[0].addr, 0xfee00000);
    assert_int_equal(f->irq.msi[0].data, 0x4063);
    pci_msi_notify(d, 4); /* beyond what is enabled */
    assert_int_equal(f->irq.nmsi, 1);

    /* Per-vector mask: pending, then delivered on unmask. */
    cfg_wr_ecam(f, 0, d->devfn, c + 0x10, 4, 0xffffffff);
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, c + 0x10, 4), 0xf);
    pci_msi_notify(d, 1);
    assert_int_equal(f->irq.nmsi, 1);
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, c + 0x14, 4), 2);
    cfg_wr_ecam(f, 0, d->devfn, c + 0x14, 4, 0); /* pending is read-only */
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, c + 0x14, 4), 2);
    cfg_wr_ecam(f, 0, d->devfn, c + 0x10, 4, 0xd);
    assert_int_equal(f->irq.nmsi, 2);
    assert_int_equal(f->irq.msi[1].data, 0x4061);
    assert_int_equal(pci_config_read(f->h, 0, d->devfn, c + 0x14, 4), 0);
}

static void test_hostile_accesses(void **state)
{
    struct fx *f = *state;
    struct pci_device *td = pci_testdev_create(f->h);
    assert_int_equal(pci_assign_resources(f->h), 0);
    unsigned devfn = td->devfn;
    uint8_t before[256];
    memcpy(before, td->config, sizeof(before));

    /* Read-only fields: IDs, class, header type, pin, capability pointer, status bits. */
    cfg_wr_ecam(f, 0, devfn, 0x00, 4, 0);
    cfg_wr_ecam(f, 0, devfn, 0x08, 4, 0);
    cfg_wr_ecam(f, 0, devfn, 0x0c, 4, 0xffffffff);
    cfg_wr_ecam(f, 0, devfn, 0x2c, 4, 0);
    cfg_wr_ecam(f, 0, devfn, 0x34, 4, 0x40);
    cfg_wr_ecam(f, 0, devfn, 0x3d, 1, 4);
    cfg_wr_ecam(f, 0, devfn, 0x06, 2, 0xffff);
    for (unsigned o = 0; o < 0x40; o++) {
        if (o == PCI_CACHE_LINE_SIZE)
            continue;
        assert_int_equal(td->config[o], before[o]);
    }
    /* Writes beyond the header of a conventional device go nowhere. */
    for (unsigned o = 0x40; o < 256; o += 4)
        cfg_wr_ecam(f, 0, devfn, o, 4, 0xffffffff);
    assert_memory_equal(td->config + 0x40, before + 0x40, 256 - 0x40);
    /* Extended config space of a conventional device: all ones, writes dropped. */
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x100, 4), 0xffffffff);
    cfg_wr_ecam(f, 0, devfn, 0x100, 4, 0);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0xffc, 4), 0xffffffff);
    /* Unaligned ECAM accesses inside config space behave bytewise, crossing the end does not. */
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x01, 4), pci_config_read(f->h, 0, devfn, 1, 2) |
                                                            pci_config_read(f->h, 0, devfn, 3, 2)
                                                                << 16);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0xfe, 4), 0xffffffff);
    /* 8-byte ECAM reads are two dwords. */
    assert_int_equal(mmio_rd(f, ecam_addr(0, devfn, 0), 8),
                     (uint64_t)pci_config_read(f->h, 0, devfn, 4, 4) << 32 | 0x00051b36);
    /* Bad sizes through the API. */
    assert_int_equal(pci_config_read(f->h, 0, devfn, 0, 3), 0xffffffff);
    pci_config_write(f->h, 0, devfn, 0x3c, 3, 0);
    pci_config_write(f->h, 0, 999, 0x3c, 1, 0);
    assert_int_equal(pci_config_read(f->h, 0, 999, 0, 4), 0xffffffff);
    assert_int_equal(pci_config_read(f->h, 0, devfn, 5000, 1), 0xff);
    /* Non-dword accesses to CONFIG_ADDRESS are ignored. */
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, cf8_addr(0, devfn, 0));
    pio_out(f, PORT_PCI_CONFIG_ADDR, 2, 0);
    pio_out(f, PORT_PCI_CONFIG_ADDR + 2, 2, 0xffff);
    assert_int_equal(pio_in(f, PORT_PCI_CONFIG_ADDR, 4), cf8_addr(0, devfn, 0));
    assert_int_equal(pio_in(f, PORT_PCI_CONFIG_ADDR, 2), 0xffff);

    /* A BAR pointed at ECAM, or an I/O BAR over CF8, is not mapped; config access survives. */
    uint64_t mem = bar_addr(f, td, 0);
    cfg_wr_ecam(f, 0, devfn, 0x10, 4, (uint32_t)(LAYOUT_ECAM + 0x1000));
    assert_false(td->bars[0].mapped);
    uint64_t v;
    assert_false(bus_read(&f->m.mmio, mem, 4, &v));
    cfg_wr_ecam(f, 0, devfn, 0x14, 4, 0xc00);
    assert_false(td->bars[1].mapped);
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0, 4), 0x00051b36);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x14, 4), 0xc01);
    /* An I/O BAR past 64 KiB and a memory BAR at the very top: unmapped, no crash. */
    cfg_wr_ecam(f, 0, devfn, 0x14, 4, 0xffffff00);
    assert_false(td->bars[1].mapped);
    cfg_wr_ecam(f, 0, devfn, 0x10, 4, 0xfffff000);
    assert_false(td->bars[0].mapped);
    /* Two BARs pointed at the same address: the second is refused. */
    struct pci_device *td2 = pci_testdev_create(f->h);
    assert_int_equal(pci_assign_resources(f->h), 0);
    uint64_t m1 = bar_addr(f, td, 0);
    cfg_wr_ecam(f, 0, td2->devfn, 0x10, 4, (uint32_t)m1);
    assert_true(td->bars[0].mapped);
    assert_false(td2->bars[0].mapped);
    assert_int_equal(f->irq.nmsi, 0);
}

/* cf9 handler for test_cf9 */
struct cf9_rec {
    uint64_t off, val;
    unsigned size, writes;
    uint8_t reg;
};

static uint64_t cf9_read(void *opaque, uint64_t off, unsigned size)
{
    struct cf9_rec *r = opaque;
    r->off = off;
    r->size = size;
    return r->reg;
}

static void cf9_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct cf9_rec *r = opaque;
    r->off = off;
    r->size = size;
    r->val = val;
    r->reg = (uint8_t)val;
    r->writes++;
}

static const struct bus_ops cf9_ops = {.read = cf9_read, .write = cf9_write};

static void test_cf9(void **state)
{
    struct fx *f = *state;
    assert_int_equal(pio_in(f, PORT_RESET_CONTROL, 1), 0xff);
    pio_out(f, PORT_RESET_CONTROL, 1, 0x06); /* no handler yet: dropped */
    struct cf9_rec r = {0};
    pci_host_set_cf9_handler(f->h, &cf9_ops, &r);
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, 0x80000800);
    pio_out(f, PORT_RESET_CONTROL, 1, 0x02);
    assert_int_equal(r.writes, 1);
    assert_int_equal(r.off, 0);
    assert_int_equal(r.size, 1);
    assert_int_equal(r.val, 0x02);
    assert_int_equal(pio_in(f, PORT_RESET_CONTROL, 1), 0x02);
    /* The reset register does not disturb CONFIG_ADDRESS, and dword writes do not reach it. */
    assert_int_equal(pio_in(f, PORT_PCI_CONFIG_ADDR, 4), 0x80000800);
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, 0x80000000);
    assert_int_equal(r.writes, 1);
    pio_out(f, PORT_RESET_CONTROL, 2, 0xffff); /* word at 0xCF9: not the reset register */
    assert_int_equal(r.writes, 1);
}

static void test_express(void **state)
{
    struct fx *f = *state;
    struct tdev *t = xzalloc(sizeof(*t));
    pci_device_init(&t->pci, "pcie", 0x1234, 0x4444, 0x020000, &tdev_ops);
    int cap = pci_express_init(&t->pci);
    assert_true(cap >= 0x40);
    assert_int_equal(t->pci.config_size, 4096);
    assert_int_equal(pci_device_register(f->h, &t->pci, -1), 0);
    unsigned devfn = t->pci.devfn;
    assert_int_equal(pci_find_capability(&t->pci, PCI_CAP_ID_EXP), (unsigned)cap);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, PCI_CAPABILITY_LIST, 1), cap);
    assert_true(cfg_rd_ecam(f, 0, devfn, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, cap, 1), PCI_CAP_ID_EXP);
    /* Version 2, root complex integrated endpoint: it sits on the root bus. */
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, cap + 2, 2) & 0xff, 0x92);
    /* Extended space exists and holds no capabilities. */
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0x100, 4), 0);
    assert_int_equal(cfg_rd_ecam(f, 0, devfn, 0xffc, 4), 0);
    /* Mechanism #1 cannot reach it: only the low 256 bytes. */
    assert_int_equal(cfg_rd_cf8(f, 0, devfn, 0x00, 4), 0x44441234);
}

static void test_capability_list(void **state)
{
    struct pci_device d;
    pci_device_init(&d, "caps", 1, 2, 0, NULL);
    int a = pci_add_capability(&d, PCI_CAP_ID_VNDR, 16);
    int b = pci_add_capability(&d, PCI_CAP_ID_VNDR, 20);
    int c = pci_msi_init(&d, 1, false);
    assert_true(a >= 0x40 && b >= 0x40 && c >= 0x40);
    assert_true(IS_ALIGNED(a, 4) && IS_ALIGNED(b, 4) && IS_ALIGNED(c, 4));
    assert_true(b >= a + 16 && c >= b + 20);
    /* The list visits all three, each once. */
    unsigned seen = 0, off = d.config[PCI_CAPABILITY_LIST];
    for (unsigned n = 0; off && n < 10; n++) {
        seen |= off == (unsigned)a ? 1 : off == (unsigned)b ? 2 : off == (unsigned)c ? 4 : 8;
        off = d.config[off + 1];
    }
    assert_int_equal(seen, 7);
    assert_int_equal(pci_find_capability(&d, PCI_CAP_ID_MSI), (unsigned)c);
    assert_int_equal(pci_find_capability(&d, PCI_CAP_ID_MSIX), 0);
    /* Space runs out cleanly. */
    int r;
    while ((r = pci_add_capability(&d, PCI_CAP_ID_VNDR, 40)) > 0)
        assert_true(r + 40 <= 256);
    assert_int_equal(r, -ENOSPC);
}

static void test_reset(void **state)
{
    struct fx *f = *state;
    struct pci_device *td = pci_testdev_create(f->h);
    struct tdev *t = msix_dev(f, 4);
    struct pci_device *d = &t->pci;
    uint8_t td_power_on[256];
    memcpy(td_power_on, td->power_on, sizeof(td_power_on));
    unsigned pio_ranges = 2, mmio_ranges = 1; /* CF8, CFC; ECAM */

    assert_int_equal(pci_assign_resources(f->h), 0);
    uint64_t tm = bar_addr(f, td, 0);
    mmio_wr(f, tm, 4, 0x12345678);
    pci_set_irq(td, true);
    assert_true(f->irq.level[pci_device_gsi(td)]);
    uint64_t table = bar_addr(f, d, 1);
    msix_program(f, table, 2, 0xfee00000, 0x99, false);
    cfg_wr_ecam(f, 0, d->devfn, d->msix_cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    pio_out(f, PORT_PCI_CONFIG_ADDR, 4, 0x80001000);

    machine_reset_devices(&f->m);

    assert_false(f->irq.level[pci_device_gsi(td)]);
    assert_int_equal(pio_in(f, PORT_PCI_CONFIG_ADDR, 4), 0);
    assert_memory_equal(td->config, td_power_on, 256);
    assert_int_equal(pci_config_read(f->h, 0, td->devfn, PCI_COMMAND, 2), 0);
    assert_int_equal(pci_config_read(f->h, 0, td->devfn, 0x10, 4), 0);
    assert_int_equal(pci_config_read(f->h, 0, td->devfn, 0x14, 4), 1);
    assert_int_equal(pci_config_read(f->h, 0, td->devfn, PCI_INTERRUPT_LINE, 1), 0);
    assert_false(pci_config_read(f->h, 0, td->devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    assert_int_equal(f->m.pio.count, pio_ranges);
    assert_int_equal(f->m.mmio.count, mmio_ranges);
    assert_false(pci_msix_enabled(d));
    assert_int_equal(t->resets, 1);
    /* The host bridge survives too. */
    assert_int_equal(cfg_rd_ecam(f, 0, 0, 0, 4), 0x00081b36);

    /* After reassignment: device state is power-on, MSI-X vectors are masked again. */
    assert_int_equal(pci_assign_resources(f->h), 0);
    assert_int_equal(mmio_rd(f, bar_addr(f, td, 0), 4), 0);
    table = bar_addr(f, d, 1);
    assert_int_equal(mmio_rd(f, table + 16 * 2 + 12, 4), 1);
    assert_int_equal(mmio_rd(f, table + 16 * 2 + 8, 4), 0);
    /* The INTx reference count was reset with the device: a new assert works. */
    pci_set_irq(td, true);
    assert_true(f->irq.level[pci_device_gsi(td)]);
    pci_set_irq(td, false);
    assert_false(f->irq.level[pci_device_gsi(td)]);
}

static void test_slots(void **state)
{
    struct fx *f = *state;
    struct tdev *t[32];
    unsigned n = 0;
    for (;; n++) {
        t[n] = xzalloc(sizeof(*t[n]));
        tdev_init(t[n], 1);
        int r = pci_device_register(f->h, &t[n]->pci, -1);
        if (r < 0) {
            assert_int_equal(r, -ENOSPC);
            free(t[n]);
            break;
        }
        assert_int_equal(pci_device_slot(&t[n]->pci), n + 1);
    }
    assert_int_equal(n, 31);
    struct tdev *x = xzalloc(sizeof(*x));
    tdev_init(x, 1);
    assert_int_equal(pci_device_register(f->h, &x->pci, 3), -EBUSY);
    assert_int_equal(pci_device_register(f->h, &x->pci, 0), -EINVAL);
    assert_int_equal(pci_device_register(f->h, &x->pci, 32), -EINVAL);
    free(x);
    /* 31 devices with 6 BARs each still fit the windows. */
    assert_int_equal(pci_assign_resources(f->h), 0);
}

/* Random config writes, BAR moves and device accesses: nothing breaks, invariants hold. */
static void test_random_guest(void **state)
{
    struct fx *f = *state;
    struct pci_device *devs[4];
    devs[0] = pci_testdev_create(f->h);
    devs[1] = &msix_dev(f, 9)->pci;
    struct tdev *t = xzalloc(sizeof(*t));
    tdev_init(t, 3);
    assert_true(pci_msi_init(&t->pci, 8, true) > 0);
    assert_int_equal(pci_device_register(f->h, &t->pci, -1), 0);
    devs[2] = &t->pci;
    devs[3] = pci_host_find(f->h, 0);
    assert_int_equal(pci_assign_resources(f->h), 0);
    static const unsigned sizes[] = {1, 2, 4, 8};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (unsigned i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        struct pci_device *d = devs[(x >> 8) % 4];
        unsigned size = sizes[(x >> 12) & 3], reg = (unsigned)(x >> 16) % 0x1002;
        uint32_t val = (uint32_t)(x >> 32);
        /* Bias towards the header and the capabilities, where the side effects are. */
        if ((x >> 30) & 1)
            reg &= 0xff;
        if (i % 512 == 0) /* back to a sane layout now and then, so BAR accesses happen */
            pci_assign_resources(f->h);
        switch ((x >> 4) % 8) {
        case 0:
        case 1:
            mmio_wr(f, ecam_addr(0, d->devfn, reg), size, val);
            break;
        case 2:
            cfg_wr_cf8(f, 0, d->devfn, reg & 0xff, size > 4 ? 4 : size, val);
            break;
        case 3: {
            const struct pci_bar *b = &d->bars[(x >> 40) % PCI_NUM_BARS];
            uint64_t v;
            if (b->mapped) {
                struct bus *bus = b->kind & PCI_BAR_IO ? &f->m.pio : &f->m.mmio;
                uint64_t a = b->addr + (x >> 44) % (b->size + 8);
                if ((x >> 3) & 1)
                    bus_write(bus, a, size, val);
                else
                    bus_read(bus, a, size, &v);
            }
            break;
        }
        case 4:
            pci_set_irq(d, (x >> 50) & 1);
            break;
        case 5:
            pci_msix_notify(d, (unsigned)(x >> 50) % 12);
            pci_msi_notify(d, (unsigned)(x >> 50) % 40);
            break;
        case 6:
            pio_out(f, PORT_PCI_CONFIG_ADDR + (x >> 40) % 4, size > 4 ? 4 : size, val);
            pio_out(f, PORT_PCI_CONFIG_DATA + (x >> 42) % 4, 1, val);
            break;
        default:
            mmio_wr(f, LAYOUT_ECAM + ((x >> 20) % LAYOUT_ECAM_SIZE & ~7ULL), size, val);
            break;
        }
        if (f->irq.nmsi > 32)
            f->irq.nmsi = 0;
    }
    /* Mapped BARs are on the bus where they say, and nothing overlaps anything. */
    for (const struct bus *b = &f->m.pio;; b = &f->m.mmio) {
        for (unsigned i = 0; i < b->count; i++)
            for (unsigned j = 0; j < i; j++)
                assert_true(b->ranges[i].base >= b->ranges[j].base + b->ranges[j].len ||
                            b->ranges[j].base >= b->ranges[i].base + b->ranges[i].len);
        if (b == &f->m.mmio)
            break;
    }
    for (unsigned k = 0; k < 4; k++)
        for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
            const struct pci_bar *bar = &devs[k]->bars[i];
            if (!bar->mapped)
                continue;
            const struct bus_range *r =
                bus_find(bar->kind & PCI_BAR_IO ? &f->m.pio : &f->m.mmio, bar->addr);
            assert_non_null(r);
            assert_ptr_equal(r->opaque, bar);
            assert_int_equal(r->len, bar->size);
        }
    /* Each INTx GSI is up exactly when some device drives it. */
    for (unsigned g = 16; g < 20; g++) {
        bool any = false;
        for (unsigned k = 0; k < 3; k++)
            any |= devs[k]->intx_asserted && pci_device_gsi(devs[k]) == (int)g;
        assert_int_equal(f->irq.level[g], any);
    }
    /* The config mechanisms still work, and reset brings everything back. */
    assert_int_equal(cfg_rd_ecam(f, 0, 0, 0, 4), 0x00081b36);
    assert_int_equal(cfg_rd_cf8(f, 0, 0, 0, 4), 0x00081b36);
    machine_reset_devices(&f->m);
    assert_int_equal(f->m.pio.count, 2);
    assert_int_equal(f->m.mmio.count, 1);
    for (unsigned g = 16; g < 20; g++)
        assert_false(f->irq.level[g]);
    assert_int_equal(pci_assign_resources(f->h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_bridge_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cf8_and_ecam_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_slots_all_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assignment, setup, teardown),
        cmocka_unit_test(test_assignment_without_64bit_window_and_full),
        cmocka_unit_test_setup_teardown(test_command_toggles_mappings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msix_shared_bar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cf9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_express, setup, teardown),
        cmocka_unit_test(test_capability_list),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_guest, setup, teardown),
    };
    return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
