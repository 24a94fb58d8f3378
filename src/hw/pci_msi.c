/* MSI and MSI-X for PCI devices: capabilities, the MSI-X table and PBA, masking and delivery. */
#include "hw/pci_internal.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/machine.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* 64-bit MSI capability layout. */
#define MSI_ADDR_HI 0x08
#define MSI_DATA 0x0c
#define MSI_MASK 0x10
#define MSI_PENDING 0x14
#define MSI_CAP_SIZE 0x18

static void pci_send_msi(struct pci_device *d, uint64_t addr, uint32_t data)
{
    if (d->host)
        irq_send_msi(&d->host->m->irq, addr, data);
}

/* ---- MSI ---- */

int pci_msi_init(struct pci_device *d, unsigned nvectors, bool maskable)
{
    if (d->msi_cap || nvectors < 1 || nvectors > 32 || (nvectors & (nvectors - 1)))
        return -EINVAL;
    int off = pci_add_capability(d, PCI_CAP_ID_MSI, maskable ? MSI_CAP_SIZE : 0x10);
    if (off < 0)
        return off;
    unsigned c = (unsigned)off;
    unsigned log2n = (unsigned)__builtin_ctz(nvectors);
    uint16_t flags = (uint16_t)(PCI_MSI_FLAGS_64BIT | (log2n << 1));
    if (maskable)
        flags |= PCI_MSI_FLAGS_MASKBIT;
    pci_set_word(d->config, c + PCI_MSI_FLAGS, flags);
    pci_set_word(d->wmask, c + PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
    pci_set_long(d->wmask, c + PCI_MSI_ADDRESS_LO, 0xfffffffcu);
    pci_set_long(d->wmask, c + MSI_ADDR_HI, 0xffffffffu);
    pci_set_word(d->wmask, c + MSI_DATA, 0xffff);
    if (maskable)
        pci_set_long(d->wmask, c + MSI_MASK, nvectors == 32 ? 0xffffffffu : (1u << nvectors) - 1);
    d->msi_cap = (uint8_t)c;
    return off;
}

bool pci_msi_enabled(const struct pci_device *d)
{
    return d->msi_cap && (pci_get_word(d, d->msi_cap + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_ENABLE);
}

/* Vectors the guest enabled, never more than the device offers. */
static unsigned msi_nvectors(const struct pci_device *d)
{
    uint16_t flags = pci_get_word(d, d->msi_cap + PCI_MSI_FLAGS);
    unsigned cap = (flags & PCI_MSI_FLAGS_QMASK) >> 1, en = (flags & PCI_MSI_FLAGS_QSIZE) >> 4;
    return 1u << MIN(cap, en);
}

static bool msi_maskable(const struct pci_device *d)
{
    return pci_get_word(d, d->msi_cap + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_MASKBIT;
}

static void msi_deliver(struct pci_device *d, unsigned vector)
{
    unsigned c = d->msi_cap, n = msi_nvectors(d);
    uint64_t addr = pci_get_long(d, c + PCI_MSI_ADDRESS_LO) |
                    (uint64_t)pci_get_long(d, c + MSI_ADDR_HI) << 32;
    uint32_t data = pci_get_word(d, c + MSI_DATA);
    /* Multiple-message MSI puts the vector number in the low data bits. */
    data = (data & ~(n - 1)) | vector;
    pci_send_msi(d, addr, data);
}

void pci_msi_notify(struct pci_device *d, unsigned vector)
{
    if (!pci_msi_enabled(d) || vector >= msi_nvectors(d))
        return;
    unsigned c = d->msi_cap;
    if (msi_maskable(d) && (pci_get_long(d, c + MSI_MASK) & (1u << vector))) {
        pci_set_long(d->config, c + MSI_PENDING,
                     pci_get_long(d, c + MSI_PENDING) | (1u << vector));
        return;
    }
    if (!pci_bus_master_enabled(d))
        return;
    msi_deliver(d, vector);
}

void pci_msi_config_written(struct pci_device *d)
{
    if (!pci_msi_enabled(d) || !msi_maskable(d) || !pci_bus_master_enabled(d))
        return;
    unsigned c = d->msi_cap;
    uint32_t pending = pci_get_long(d, c + MSI_PENDING), mask = pci_get_long(d, c + MSI_MASK);
    uint32_t ready = pending & ~mask;
    if (!ready)
        return;
    pci_set_long(d->config, c + MSI_PENDING, pending & ~ready);
    for (unsigned v = 0; v < msi_nvectors(d); v++)
        if (ready & (1u << v))
            msi_deliver(d, v);
}

/* ---- MSI-X ---- */

static uint64_t msix_table_len(const struct pci_msix *x)
{
    return (uint64_t)x->nvectors * PCI_MSIX_ENTRY_SIZE;
}

static uint64_t msix_pba_len(const struct pci_msix *x)
{
    return DIV_ROUND_UP((uint64_t)x->nvectors, 64) * 8;
}

void pci_msix_reset(struct pci_device *d)
{
    struct pci_msix *x = &d->msix;
    if (!x->nvectors)
        return;
    memset(x->table, 0, msix_table_len(x));
    memset(x->pba, 0, msix_pba_len(x));
    /* Every vector comes out of reset masked. */
    for (unsigned v = 0; v < x->nvectors; v++)
        x->table[v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL] =
            PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

int pci_msix_init(struct pci_device *d, unsigned nvectors, unsigned bar, uint64_t table_off,
                  uint64_t pba_off)
{
    struct pci_msix *x = &d->msix;
    if (x->nvectors || nvectors < 1 || nvectors > PCI_MSIX_MAX_VECTORS || bar >= PCI_NUM_BARS ||
        !IS_ALIGNED(table_off, 8) || !IS_ALIGNED(pba_off, 8) || table_off > UINT32_MAX ||
        pba_off > UINT32_MAX)
        return -EINVAL;
    uint64_t tlen = (uint64_t)nvectors * PCI_MSIX_ENTRY_SIZE;
    uint64_t plen = DIV_ROUND_UP((uint64_t)nvectors, 64) * 8;
    if (pci_ranges_overlap(table_off, tlen, pba_off, plen))
        return -EINVAL;
    uint64_t need = MAX(table_off + tlen, pba_off + plen);
    if (!d->bars[bar].kind) {
        uint64_t size = 4 * KiB;
        while (size < need)
            size <<= 1;
        int r = pci_bar_init(d, bar, PCI_BAR_MEM32, size, NULL, NULL);
        if (r < 0)
            return r;
    } else if ((d->bars[bar].kind & PCI_BAR_IO) || d->bars[bar].size < need) {
        return -EINVAL;
    }
    int off = pci_add_capability(d, PCI_CAP_ID_MSIX, 12);
    if (off < 0)
        return off;
    unsigned c = (unsigned)off;
    pci_set_word(d->config, c + PCI_MSIX_FLAGS, (uint16_t)(nvectors - 1));
    pci_set_word(d->wmask, c + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    pci_set_long(d->config, c + PCI_MSIX_TABLE, (uint32_t)table_off | bar);
    pci_set_long(d->config, c + PCI_MSIX_PBA, (uint32_t)pba_off | bar);
    d->msix_cap = (uint8_t)c;
    *x = (struct pci_msix){.nvectors = nvectors, .bar = bar, .table_off = table_off,
                           .pba_off = pba_off, .table = xzalloc(tlen), .pba = xzalloc(plen)};
    pci_msix_reset(d);
    return off;
}

bool pci_msix_enabled(const struct pci_device *d)
{
    return d->msix_cap &&
           (pci_get_word(d, d->msix_cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_ENABLE);
}

static bool msix_function_masked(const struct pci_device *d)
{
    return pci_get_word(d, d->msix_cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_MASKALL;
}

static const uint8_t *msix_entry(const struct pci_device *d, unsigned v)
{
    return d->msix.table + (size_t)v * PCI_MSIX_ENTRY_SIZE;
}

bool pci_msix_vector_masked(const struct pci_device *d, unsigned vector)
{
    if (vector >= d->msix.nvectors)
        return true;
    return msix_function_masked(d) ||
           (msix_entry(d, vector)[PCI_MSIX_ENTRY_VECTOR_CTRL] & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

bool pci_msix_pending(const struct pci_device *d, unsigned vector)
{
    return vector < d->msix.nvectors && (d->msix.pba[vector / 64] >> (vector % 64)) & 1;
}

int pci_msix_message(const struct pci_device *d, unsigned vector, uint64_t *addr, uint32_t *data)
{
    if (vector >= d->msix.nvectors)
        return -EINVAL;
    const uint8_t *e = msix_entry(d, vector);
    *addr = 0;
    *data = 0;
    for (unsigned i = 0; i < 8; i++)
        *addr |= (uint64_t)e[i] << (8 * i);
    for (unsigned i = 0; i < 4; i++)
        *data |= (uint32_t)e[8 + i] << (8 * i);
    return 0;
}

static void msix_deliver(struct pci_device *d, unsigned v)
{
    uint64_t addr;
    uint32_t data;
    if (pci_msix_message(d, v, &addr, &data) == 0)
        pci_send_msi(d, addr, data);
}

void pci_msix_notify(struct pci_device *d, unsigned vector)
{
    if (!pci_msix_enabled(d) || vector >= d->msix.nvectors)
        return;
    if (pci_msix_vector_masked(d, vector)) {
        d->msix.pba[vector / 64] |= 1ULL << (vector % 64);
        return;
    }
    if (!pci_bus_master_enabled(d))
        return;
    msix_deliver(d, vector);
}

/* Send what was held back for vectors [first, last] that are no longer masked. */
static void msix_release_pending(struct pci_device *d, unsigned first, unsigned last)
{
    if (!pci_msix_enabled(d) || msix_function_masked(d) || !pci_bus_master_enabled(d))
        return;
    for (unsigned v = first; v <= last && v < d->msix.nvectors; v++) {
        if (pci_msix_pending(d, v) && !pci_msix_vector_masked(d, v)) {
            d->msix.pba[v / 64] &= ~(1ULL << (v % 64));
            msix_deliver(d, v);
        }
    }
}

void pci_msix_config_written(struct pci_device *d)
{
    if (!d->msix.nvectors)
        return;
    msix_release_pending(d, 0, d->msix.nvectors - 1);
    if (d->ops && d->ops->msix_changed)
        d->ops->msix_changed(d, 0, d->msix.nvectors - 1);
}

bool pci_msix_bar_read(struct pci_device *d, unsigned bar, uint64_t off, unsigned size,
                       uint64_t *val)
{
    struct pci_msix *x = &d->msix;
    if (!x->nvectors || bar != x->bar || size == 0 || size > 8)
        return false;
    uint64_t tlen = msix_table_len(x), plen = msix_pba_len(x);
    bool in_table = pci_ranges_overlap(off, size, x->table_off, tlen);
    bool in_pba = pci_ranges_overlap(off, size, x->pba_off, plen);
    if (!in_table && !in_pba)
        return false;
    uint64_t v = 0;
    /* Byte by byte: odd-sized or straddling accesses are the guest's problem, not a crash. */
    for (unsigned i = 0; i < size; i++) {
        uint64_t o = off + i;
        uint8_t b = 0;
        if (o >= x->table_off && o - x->table_off < tlen)
            b = x->table[o - x->table_off];
        else if (o >= x->pba_off && o - x->pba_off < plen) {
            uint64_t p = o - x->pba_off;
            b = (uint8_t)(x->pba[p / 8] >> (8 * (p % 8)));
        }
        v |= (uint64_t)b << (8 * i);
    }
    *val = v;
    return true;
}

bool pci_msix_bar_write(struct pci_device *d, unsigned bar, uint64_t off, unsigned size,
                        uint64_t val)
{
    struct pci_msix *x = &d->msix;
    if (!x->nvectors || bar != x->bar || size == 0 || size > 8)
        return false;
    uint64_t tlen = msix_table_len(x), plen = msix_pba_len(x);
    bool in_table = pci_ranges_overlap(off, size, x->table_off, tlen);
    bool in_pba = pci_ranges_overlap(off, size, x->pba_off, plen);
    if (!in_table && !in_pba)
        return false;
    if (!in_table)
        return true; /* the PBA is read-only */
    unsigned first = UINT32_MAX, last = 0;
    for (unsigned i = 0; i < size; i++) {
        uint64_t o = off + i;
        if (o < x->table_off || o - x->table_off >= tlen)
            continue;
        uint64_t t = o - x->table_off;
        unsigned field = (unsigned)(t % PCI_MSIX_ENTRY_SIZE);
        uint8_t b = (uint8_t)(val >> (8 * i));
        /* Vector control: only the mask bit exists, the rest reads as zero. */
        if (field == PCI_MSIX_ENTRY_VECTOR_CTRL)
            b &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
        else if (field > PCI_MSIX_ENTRY_VECTOR_CTRL)
            b = 0;
        x->table[t] = b;
        unsigned v = (unsigned)(t / PCI_MSIX_ENTRY_SIZE);
        first = MIN(first, v);
        last = MAX(last, v);
    }
    if (first != UINT32_MAX) {
        msix_release_pending(d, first, last);
        if (d->ops && d->ops->msix_changed)
            d->ops->msix_changed(d, first, last);
    }
    return true;
}
