/* The PCI device framework: config space with masks, BARs mapped on the machine's buses, INTx. */
#include "hw/pci_internal.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include "machine/machine.h"
#include <errno.h>
#include <string.h>

#define PCI_BAR_UNMAPPED UINT64_MAX
/* Guests cannot address more than 52 bits; a BAR beyond is being sized or is garbage. */
#define PCI_PHYS_LIMIT (1ULL << 52)

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
                     uint32_t class_code, const struct pci_device_ops *ops)
{
    memset(d, 0, sizeof(*d));
    d->name = name;
    d->ops = ops;
    d->config_size = PCI_CONFIG_SPACE_SIZE;
    d->cap_next = 0x40;
    pci_set_word(d->config, PCI_VENDOR_ID, vendor);
    pci_set_word(d->config, PCI_DEVICE_ID, device);
    d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
    pci_set_word(d->config, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
    pci_set_word(d->wmask, PCI_COMMAND,
                 PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | 0x0040 /* parity */ |
                     PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    /* Error bits: detected parity, signalled system error, master/target aborts, data parity. */
    pci_set_word(d->w1cmask, PCI_STATUS, 0xf900);
    d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

void pci_device_set_subsystem(struct pci_device *d, uint16_t vendor, uint16_t id)
{
    pci_set_word(d->config, PCI_SUBSYSTEM_VENDOR_ID, vendor);
    pci_set_word(d->config, PCI_SUBSYSTEM_ID, id);
}

void pci_device_set_revision(struct pci_device *d, uint8_t rev)
{
    d->config[PCI_REVISION_ID] = rev;
}

void pci_device_set_irq_pin(struct pci_device *d, unsigned pin)
{
    d->config[PCI_INTERRUPT_PIN] = pin <= 4 ? (uint8_t)pin : 0;
}

static bool is_pow2(uint64_t x)
{
    return x && !(x & (x - 1));
}

int pci_bar_init(struct pci_device *d, unsigned bar, unsigned kind, uint64_t size,
                 const struct bus_ops *ops, void *opaque)
{
    unsigned type = kind & (PCI_BAR_IO | PCI_BAR_MEM32 | PCI_BAR_MEM64);
    bool pref = kind & PCI_BAR_PREFETCH;
    if (bar >= PCI_NUM_BARS || !is_pow2(size) || d->bars[bar].kind)
        return -EINVAL;
    if (bar > 0 && (d->bars[bar - 1].kind & PCI_BAR_MEM64))
        return -EINVAL; /* upper half of a 64-bit BAR */
    if (type == PCI_BAR_IO && (pref || size < 4 || size > 256))
        return -EINVAL;
    if (type == PCI_BAR_MEM32 && (size < 16 || size > 2 * GiB))
        return -EINVAL;
    if (type == PCI_BAR_MEM64 && (size < 16 || bar + 1 >= PCI_NUM_BARS || d->bars[bar + 1].kind))
        return -EINVAL;
    if (type != PCI_BAR_IO && type != PCI_BAR_MEM32 && type != PCI_BAR_MEM64)
        return -EINVAL;

    d->bars[bar] = (struct pci_bar){
        .kind = kind, .size = size, .ops = ops, .opaque = opaque, .dev = d, .index = bar};
    unsigned reg = PCI_BASE_ADDRESS_0 + 4 * bar;
    uint64_t mask = ~(size - 1);
    if (type == PCI_BAR_IO) {
        pci_set_long(d->config, reg, PCI_BASE_ADDRESS_SPACE_IO);
        pci_set_long(d->wmask, reg, (uint32_t)mask & ~3u);
        return 0;
    }
    uint32_t flags = (type == PCI_BAR_MEM64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) |
                     (pref ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    pci_set_long(d->config, reg, flags);
    pci_set_long(d->wmask, reg, (uint32_t)mask & ~0xfu);
    if (type == PCI_BAR_MEM64) {
        pci_set_long(d->wmask, reg + 4, (uint32_t)(mask >> 32));
    }
    return 0;
}

int pci_add_capability(struct pci_device *d, uint8_t id, unsigned size)
{
    unsigned off = ALIGN_UP((unsigned)d->cap_next, 4u);
    if (size < 2 || off < 0x40 || off + size > PCI_CONFIG_SPACE_SIZE)
        return -ENOSPC;
    /* Prepend: the list order does not matter to guests and this keeps it O(1). */
    d->config[off] = id;
    d->config[off + 1] = d->config[PCI_CAPABILITY_LIST];
    d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
    pci_set_word(d->config, PCI_STATUS, pci_get_word(d, PCI_STATUS) | PCI_STATUS_CAP_LIST);
    d->cap_next = off + size;
    return (int)off;
}

unsigned pci_find_capability(const struct pci_device *d, uint8_t id)
{
    unsigned off = d->config[PCI_CAPABILITY_LIST] & ~3u;
    /* A bounded walk: config space is ours, but do not trust it to be acyclic. */
    for (unsigned n = 0; off >= 0x40 && n < 48; n++) {
        if (d->config[off] == id)
            return off;
        off = d->config[off + 1] & ~3u;
    }
    return 0;
}

int pci_express_init(struct pci_device *d)
{
    int off = pci_add_capability(d, PCI_CAP_ID_EXP, 0x3c);
    if (off < 0)
        return off;
    d->config_size = PCIE_CONFIG_SPACE_SIZE;
    /* Capability version 2, device/port type 9: root complex integrated endpoint, as QEMU
     * makes devices on a PCIe root bus; there is no root port above it, hence no link. */
    pci_set_word(d->config, (unsigned)off + 2, 0x0092);
    /* Device capabilities: 128-byte max payload, role-based error reporting. */
    pci_set_long(d->config, (unsigned)off + 4, 0x00008000);
    /* Device control: relaxed ordering, no snoop, payload and read request sizes writable. */
    pci_set_word(d->wmask, (unsigned)off + 8, 0x7fff);
    pci_set_word(d->config, (unsigned)off + 8, 0x2810);
    return off;
}

int pci_device_gsi(const struct pci_device *d)
{
    unsigned pin = d->config[PCI_INTERRUPT_PIN];
    if (pin < 1 || pin > 4)
        return -1;
    /* Must match the _PRT in the DSDT: GSI 16 + ((slot + pin_index) & 3). */
    return IRQ_PCI_INTX_BASE + (int)((pci_device_slot(d) + pin - 1) & 3);
}

bool pci_bus_master_enabled(const struct pci_device *d)
{
    return pci_get_word(d, PCI_COMMAND) & PCI_COMMAND_MASTER;
}

void pci_intx_update(struct pci_device *d)
{
    struct pci_host *h = d->host;
    int gsi = pci_device_gsi(d);
    bool want = d->intx_level && gsi >= 0 &&
                !(pci_get_word(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE);
    if (!h || want == d->intx_asserted)
        return;
    /* The swizzle shares each GSI between slots: the line is the OR of its devices. */
    unsigned idx = (unsigned)gsi - IRQ_PCI_INTX_BASE;
    d->intx_asserted = want;
    if (want) {
        if (h->intx_refs[idx]++ == 0)
            irq_set_level(&h->m->irq, (unsigned)gsi, true);
    } else {
        if (h->intx_refs[idx] && --h->intx_refs[idx] == 0)
            irq_set_level(&h->m->irq, (unsigned)gsi, false);
    }
}

void pci_set_irq(struct pci_device *d, bool level)
{
    uint16_t st = pci_get_word(d, PCI_STATUS);
    st = level ? st | PCI_STATUS_INTERRUPT : st & ~PCI_STATUS_INTERRUPT;
    pci_set_word(d->config, PCI_STATUS, st);
    d->intx_level = level;
    pci_intx_update(d);
}

/* ---- BARs ---- */

static uint64_t pci_bar_read(void *opaque, uint64_t off, unsigned size)
{
    struct pci_bar *bar = opaque;
    struct pci_device *d = bar->dev;
    uint64_t v;
    if (pci_msix_bar_read(d, bar->index, off, size, &v))
        return v;
    if (bar->ops && bar->ops->read)
        return bar->ops->read(bar->opaque, off, size);
    return 0;
}

static void pci_bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct pci_bar *bar = opaque;
    struct pci_device *d = bar->dev;
    if (pci_msix_bar_write(d, bar->index, off, size, val))
        return;
    if (bar->ops && bar->ops->write)
        bar->ops->write(bar->opaque, off, val, size);
}

static const struct bus_ops pci_bar_bus_ops = {.read = pci_bar_read, .write = pci_bar_write};

/* Where the BAR should be decoded now, or PCI_BAR_UNMAPPED. */
static uint64_t pci_bar_target(const struct pci_device *d, unsigned i)
{
    const struct pci_bar *bar = &d->bars[i];
    uint16_t cmd = pci_get_word(d, PCI_COMMAND);
    unsigned reg = PCI_BASE_ADDRESS_0 + 4 * i;
    uint64_t addr, last;
    if (bar->kind & PCI_BAR_IO) {
        if (!(cmd & PCI_COMMAND_IO))
            return PCI_BAR_UNMAPPED;
        addr = pci_get_long(d, reg) & ~3u;
        last = addr + bar->size - 1;
        if (addr == 0 || last > 0xffff)
            return PCI_BAR_UNMAPPED;
        return addr;
    }
    if (!(cmd & PCI_COMMAND_MEMORY))
        return PCI_BAR_UNMAPPED;
    addr = pci_get_long(d, reg);
    if (bar->kind & PCI_BAR_MEM64)
        addr |= (uint64_t)pci_get_long(d, reg + 4) << 32;
    addr &= ~0xfULL;
    last = addr + bar->size - 1;
    /* Ending at 4 GiB - 1 or beyond what a guest can address is a BAR being sized. */
    if (addr == 0 || last < addr || last == 0xffffffffULL || last >= PCI_PHYS_LIMIT)
        return PCI_BAR_UNMAPPED;
    return addr;
}

static struct bus *pci_bar_bus(struct pci_device *d, const struct pci_bar *bar)
{
    return bar->kind & PCI_BAR_IO ? &d->host->m->pio : &d->host->m->mmio;
}

static void pci_bar_unmap(struct pci_device *d, struct pci_bar *bar)
{
    if (!bar->mapped)
        return;
    bus_unregister(pci_bar_bus(d, bar), bar->addr, bar);
    bar->mapped = false;
    if (d->ops && d->ops->bar_map)
        d->ops->bar_map(d, bar->index, bar->addr, false);
}

/* A guest may point a BAR anywhere; it must never cover (or hide inside) another range. */
static bool pci_bus_range_free(const struct bus *b, uint64_t addr, uint64_t len)
{
    for (unsigned i = 0; i < b->count; i++)
        if (pci_ranges_overlap(addr, len, b->ranges[i].base, b->ranges[i].len))
            return false;
    return true;
}

void pci_update_mappings(struct pci_device *d)
{
    if (!d->host)
        return;
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        struct pci_bar *bar = &d->bars[i];
        if (!bar->kind)
            continue;
        uint64_t target = pci_bar_target(d, i);
        if (bar->mapped && bar->addr == target)
            continue;
        pci_bar_unmap(d, bar);
        if (target == PCI_BAR_UNMAPPED)
            continue;
        struct bus *b = pci_bar_bus(d, bar);
        if (!pci_bus_range_free(b, target, bar->size) ||
            bus_register(b, target, bar->size, &pci_bar_bus_ops, bar, d->name) < 0) {
            log_once(LOG_WARN, "pci: %s BAR%u at 0x%llx overlaps another range; not mapped",
                     d->name, i, (unsigned long long)target);
            continue;
        }
        bar->mapped = true;
        bar->addr = target;
        if (d->ops && d->ops->bar_map)
            d->ops->bar_map(d, i, target, true);
    }
}

void pci_device_unmap_all(struct pci_device *d)
{
    if (!d->host)
        return;
    for (unsigned i = 0; i < PCI_NUM_BARS; i++)
        pci_bar_unmap(d, &d->bars[i]);
}

/* ---- Config space ---- */

static bool pci_access_ok(const struct pci_device *d, unsigned off, unsigned size)
{
    return (size == 1 || size == 2 || size == 4) && off < d->config_size &&
           size <= d->config_size - off;
}

uint32_t pci_device_config_read(struct pci_device *d, unsigned off, unsigned size)
{
    if (!pci_access_ok(d, off, size))
        return size == 1 ? 0xffu : size == 2 ? 0xffffu : 0xffffffffu;
    uint32_t val = 0;
    for (unsigned i = 0; i < size; i++)
        val |= (uint32_t)d->config[off + i] << (8 * i);
    if (d->ops && d->ops->config_read)
        d->ops->config_read(d, off, size, &val);
    if (size < 4)
        val &= (1u << (8 * size)) - 1;
    return val;
}

void pci_device_config_write(struct pci_device *d, unsigned off, unsigned size, uint32_t val)
{
    if (!pci_access_ok(d, off, size))
        return;
    for (unsigned i = 0; i < size; i++) {
        unsigned o = off + i;
        uint8_t b = (uint8_t)(val >> (8 * i));
        d->config[o] = (uint8_t)((d->config[o] & ~d->wmask[o]) | (b & d->wmask[o]));
        d->config[o] &= (uint8_t)~(b & d->w1cmask[o]);
    }
    if (pci_ranges_overlap(off, size, PCI_COMMAND, 2))
        pci_intx_update(d);
    if (pci_ranges_overlap(off, size, PCI_COMMAND, 2) ||
        pci_ranges_overlap(off, size, PCI_BASE_ADDRESS_0, 4 * PCI_NUM_BARS))
        pci_update_mappings(d);
    /* Bus mastering gates MSI delivery: turning it on may release held messages. */
    bool cmd = pci_ranges_overlap(off, size, PCI_COMMAND, 2);
    if (d->msi_cap && (cmd || pci_ranges_overlap(off, size, d->msi_cap, 24)))
        pci_msi_config_written(d);
    if (d->msix_cap && (cmd || pci_ranges_overlap(off, size, d->msix_cap, 12)))
        pci_msix_config_written(d);
    if (d->ops && d->ops->config_write)
        d->ops->config_write(d, off, size, val);
}

void pci_device_reset(struct pci_device *d)
{
    pci_device_unmap_all(d);
    d->intx_level = false;
    pci_intx_update(d);
    memcpy(d->config, d->power_on, sizeof(d->config));
    pci_msix_reset(d);
    if (d->ops && d->ops->reset)
        d->ops->reset(d);
}
