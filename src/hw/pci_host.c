/* The PCI host bridge: config mechanism #1 (CF8/CFC), ECAM, slots, reset and BAR assignment. */
#include "hw/pci_internal.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include "machine/machine.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_ADDR_ENABLE 0x80000000u
/* Enable, bus, device, function and dword register; reserved and low bits read as zero. */
#define CONFIG_ADDR_MASK 0x80fffffcu

static uint32_t all_ones(unsigned size)
{
    return size == 1 ? 0xffu : size == 2 ? 0xffffu : 0xffffffffu;
}

struct pci_device *pci_host_find(struct pci_host *h, unsigned devfn)
{
    return devfn < 256 ? h->devs[devfn] : NULL;
}

uint32_t pci_config_read(struct pci_host *h, unsigned bus, unsigned devfn, unsigned reg,
                         unsigned size)
{
    struct pci_device *d = bus == 0 ? pci_host_find(h, devfn) : NULL;
    if (!d || (size != 1 && size != 2 && size != 4))
        return all_ones(size);
    return pci_device_config_read(d, reg, size);
}

void pci_config_write(struct pci_host *h, unsigned bus, unsigned devfn, unsigned reg,
                      unsigned size, uint32_t val)
{
    struct pci_device *d = bus == 0 ? pci_host_find(h, devfn) : NULL;
    if (d)
        pci_device_config_write(d, reg, size, val);
}

/* ---- Mechanism #1: CONFIG_ADDRESS [0xCF8,0xCFC), CONFIG_DATA [0xCFC,0xD00) ---- */

static uint64_t cf8_read(void *opaque, uint64_t off, unsigned size)
{
    struct pci_host *h = opaque;
    if (off == 0 && size == 4)
        return h->config_addr;
    if (off == 1 && size == 1) {
        if (h->cf9_ops && h->cf9_ops->read)
            return h->cf9_ops->read(h->cf9_opaque, 0, 1);
        return 0xff;
    }
    /* Like a PIIX: only dword accesses reach CONFIG_ADDRESS (Linux probes with a byte at 0xCFB). */
    return all_ones(size);
}

static void cf8_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct pci_host *h = opaque;
    if (off == 0 && size == 4)
        h->config_addr = (uint32_t)val & CONFIG_ADDR_MASK;
    else if (off == 1 && size == 1 && h->cf9_ops && h->cf9_ops->write)
        h->cf9_ops->write(h->cf9_opaque, 0, val & 0xff, 1);
}

static bool cfc_target(const struct pci_host *h, uint64_t off, unsigned size, unsigned *bus,
                       unsigned *devfn, unsigned *reg)
{
    uint32_t a = h->config_addr;
    if (!(a & CONFIG_ADDR_ENABLE) || off >= 4 || size > 4 - off)
        return false;
    *bus = (a >> 16) & 0xff;
    *devfn = (a >> 8) & 0xff;
    *reg = (a & 0xfc) + (unsigned)off;
    return true;
}

static uint64_t cfc_read(void *opaque, uint64_t off, unsigned size)
{
    struct pci_host *h = opaque;
    unsigned bus, devfn, reg;
    if (!cfc_target(h, off, size, &bus, &devfn, &reg))
        return all_ones(size);
    return pci_config_read(h, bus, devfn, reg, size);
}

static void cfc_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct pci_host *h = opaque;
    unsigned bus, devfn, reg;
    if (cfc_target(h, off, size, &bus, &devfn, &reg))
        pci_config_write(h, bus, devfn, reg, size, (uint32_t)val);
}

static const struct bus_ops cf8_ops = {.read = cf8_read, .write = cf8_write};
static const struct bus_ops cfc_ops = {.read = cfc_read, .write = cfc_write};

/* ---- ECAM: bus << 20 | devfn << 12 | reg ---- */

static uint64_t ecam_read(void *opaque, uint64_t off, unsigned size)
{
    struct pci_host *h = opaque;
    if (size == 8)
        return ecam_read(h, off, 4) | (uint64_t)ecam_read(h, off + 4, 4) << 32;
    if (off >= LAYOUT_ECAM_SIZE)
        return all_ones(size);
    return pci_config_read(h, (unsigned)(off >> 20), (unsigned)(off >> 12) & 0xff,
                           (unsigned)off & 0xfff, size);
}

static void ecam_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct pci_host *h = opaque;
    if (size == 8) {
        ecam_write(h, off, val & 0xffffffffu, 4);
        ecam_write(h, off + 4, val >> 32, 4);
        return;
    }
    if (off < LAYOUT_ECAM_SIZE)
        pci_config_write(h, (unsigned)(off >> 20), (unsigned)(off >> 12) & 0xff,
                         (unsigned)off & 0xfff, size, (uint32_t)val);
}

static const struct bus_ops ecam_ops = {.read = ecam_read, .write = ecam_write};

/* ---- Host lifecycle ---- */

void pci_host_reset(struct pci_host *h)
{
    h->config_addr = 0;
    for (unsigned i = 0; i < 256; i++)
        if (h->devs[i])
            pci_device_reset(h->devs[i]);
}

static void pci_host_reset_handler(void *opaque)
{
    pci_host_reset(opaque);
}

static void pci_host_unregister_ranges(struct pci_host *h)
{
    bus_unregister(&h->m->pio, PORT_PCI_CONFIG_ADDR, h);
    bus_unregister(&h->m->pio, PORT_PCI_CONFIG_DATA, h);
    bus_unregister(&h->m->mmio, LAYOUT_ECAM, h);
}

static int pci_device_plug(struct pci_host *h, struct pci_device *d, unsigned devfn)
{
    d->host = h;
    d->devfn = devfn;
    memcpy(d->power_on, d->config, sizeof(d->power_on));
    h->devs[devfn] = d;
    return 0;
}

struct pci_host *pci_host_create(struct machine *m, uint64_t mmio64_base, uint64_t mmio64_size)
{
    struct pci_host *h = xzalloc(sizeof(*h));
    h->m = m;
    h->win = (struct pci_windows){
        .io_base = PORT_PCI_IO_WINDOW,
        .io_size = PORT_PCI_IO_WINDOW_END + 1 - PORT_PCI_IO_WINDOW,
        .mmio32_base = LAYOUT_PCI_MMIO,
        .mmio32_size = LAYOUT_PCI_MMIO_SIZE,
        .mmio64_base = mmio64_base,
        .mmio64_size = mmio64_base + mmio64_size < mmio64_base ? 0 : mmio64_size,
        .ecam_base = LAYOUT_ECAM,
        .ecam_size = LAYOUT_ECAM_SIZE,
    };
    if (bus_register(&m->pio, PORT_PCI_CONFIG_ADDR, 4, &cf8_ops, h, "pci-config-address") < 0 ||
        bus_register(&m->pio, PORT_PCI_CONFIG_DATA, 4, &cfc_ops, h, "pci-config-data") < 0 ||
        bus_register(&m->mmio, LAYOUT_ECAM, LAYOUT_ECAM_SIZE, &ecam_ops, h, "pci-ecam") < 0) {
        log_error("pci: cannot register the host bridge's config ranges (0xcf8, 0xcfc, ECAM "
                  "0x%llx): another device took them",
                  (unsigned long long)LAYOUT_ECAM);
        pci_host_unregister_ranges(h);
        free(h);
        return NULL;
    }
    pci_device_init(&h->bridge, "pci-host", PCI_VENDOR_ID_REDHAT, PCI_DEVICE_ID_REDHAT_PCIE_HOST,
                    0x060000, NULL);
    pci_device_plug(h, &h->bridge, 0);
    machine_add_reset_handler(m, pci_host_reset_handler, h);
    return h;
}

void pci_host_destroy(struct pci_host *h)
{
    if (!h)
        return;
    for (unsigned i = 0; i < 256; i++) {
        struct pci_device *d = h->devs[i];
        if (!d)
            continue;
        pci_device_unmap_all(d);
        d->intx_level = false;
        pci_intx_update(d);
        free(d->msix.table);
        free(d->msix.pba);
        d->msix.table = NULL;
        d->msix.pba = NULL;
        h->devs[i] = NULL;
        d->host = NULL;
        if (d != &h->bridge && d->ops && d->ops->release)
            d->ops->release(d);
    }
    pci_host_unregister_ranges(h);
    free(h);
}

void pci_host_get_windows(const struct pci_host *h, struct pci_windows *w)
{
    *w = h->win;
}

void pci_host_set_cf9_handler(struct pci_host *h, const struct bus_ops *ops, void *opaque)
{
    h->cf9_ops = ops;
    h->cf9_opaque = opaque;
}

int pci_device_register(struct pci_host *h, struct pci_device *d, int slot)
{
    if (!h || !d || d->host || slot < -1 || slot == 0 || slot >= PCI_NUM_SLOTS)
        return -EINVAL;
    if (slot == -1) {
        for (int s = 1; s < PCI_NUM_SLOTS && slot < 0; s++)
            if (!h->devs[PCI_DEVFN(s, 0)])
                slot = s;
        if (slot < 0) {
            log_error("pci: no free slot for %s: the bus has %d slots", d->name,
                      PCI_NUM_SLOTS - 1);
            return -ENOSPC;
        }
    } else if (h->devs[PCI_DEVFN(slot, 0)]) {
        log_error("pci: slot %d is taken by %s; choose another slot for %s", slot,
                  h->devs[PCI_DEVFN(slot, 0)]->name, d->name);
        return -EBUSY;
    }
    return pci_device_plug(h, d, PCI_DEVFN(slot, 0));
}

/* ---- Resource assignment ---- */

struct pci_alloc {
    struct pci_device *d;
    unsigned bar;
    uint64_t size;
};

static int alloc_cmp(const void *a, const void *b)
{
    const struct pci_alloc *x = a, *y = b;
    /* Largest first keeps every BAR naturally aligned without holes; ties by position so the
     * layout is the same on every boot. */
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    if (x->d->devfn != y->d->devfn)
        return x->d->devfn < y->d->devfn ? -1 : 1;
    return x->bar < y->bar ? -1 : (x->bar > y->bar);
}

static void bar_write_addr(struct pci_device *d, unsigned bar, uint64_t addr)
{
    unsigned reg = PCI_BASE_ADDRESS_0 + 4 * bar;
    pci_device_config_write(d, reg, 4, (uint32_t)addr);
    if (d->bars[bar].kind & PCI_BAR_MEM64)
        pci_device_config_write(d, reg + 4, 4, (uint32_t)(addr >> 32));
}

static int assign_window(struct pci_alloc *list, unsigned n, uint64_t base, uint64_t size,
                         const char *what)
{
    int ret = 0;
    uint64_t cur = base, end = base + size;
    qsort(list, n, sizeof(*list), alloc_cmp);
    for (unsigned i = 0; i < n; i++) {
        uint64_t addr = ALIGN_UP(cur, list[i].size);
        if (addr < cur || addr > end || list[i].size > end - addr) {
            log_error("pci: no room for %s BAR%u (0x%llx bytes) in the %s window "
                      "[0x%llx, 0x%llx): use fewer or smaller devices",
                      list[i].d->name, list[i].bar, (unsigned long long)list[i].size, what,
                      (unsigned long long)base, (unsigned long long)end);
            bar_write_addr(list[i].d, list[i].bar, 0);
            ret = -ENOSPC;
            continue;
        }
        bar_write_addr(list[i].d, list[i].bar, addr);
        cur = addr + list[i].size;
    }
    return ret;
}

int pci_assign_resources(struct pci_host *h)
{
    struct pci_alloc io[256], m32[256 * PCI_NUM_BARS], m64[256 * PCI_NUM_BARS / 2];
    unsigned nio = 0, n32 = 0, n64 = 0;
    bool has64 = h->win.mmio64_size != 0;

    for (unsigned f = 0; f < 256; f++) {
        struct pci_device *d = h->devs[f];
        if (!d)
            continue;
        /* No decoding while BARs move, so no half-moved layout is ever on the buses. */
        uint16_t cmd = pci_get_word(d, PCI_COMMAND);
        pci_device_config_write(d, PCI_COMMAND, 2,
                                cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
        for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
            struct pci_bar *bar = &d->bars[b];
            struct pci_alloc a = {d, b, bar->size};
            if (!bar->kind)
                continue;
            if (bar->kind & PCI_BAR_IO) {
                if (nio < ARRAY_SIZE(io))
                    io[nio++] = a;
            } else if ((bar->kind & PCI_BAR_MEM64) && has64) {
                m64[n64++] = a;
            } else {
                m32[n32++] = a;
            }
        }
    }
    int ret = 0, r;
    if ((r = assign_window(io, nio, h->win.io_base, h->win.io_size, "I/O")) < 0)
        ret = r;
    if ((r = assign_window(m32, n32, h->win.mmio32_base, h->win.mmio32_size, "32-bit MMIO")) < 0)
        ret = r;
    if ((r = assign_window(m64, n64, h->win.mmio64_base, h->win.mmio64_size, "64-bit MMIO")) < 0)
        ret = r;

    for (unsigned f = 0; f < 256; f++) {
        struct pci_device *d = h->devs[f];
        if (!d)
            continue;
        uint16_t cmd = pci_get_word(d, PCI_COMMAND);
        for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
            if (d->bars[b].kind & PCI_BAR_IO)
                cmd |= PCI_COMMAND_IO;
            else if (d->bars[b].kind)
                cmd |= PCI_COMMAND_MEMORY;
        }
        if (d != &h->bridge)
            cmd |= PCI_COMMAND_MASTER;
        pci_device_config_write(d, PCI_COMMAND, 2, cmd);
        int gsi = pci_device_gsi(d);
        if (gsi >= 0)
            pci_device_config_write(d, PCI_INTERRUPT_LINE, 1, (uint32_t)gsi);
    }
    return ret;
}
