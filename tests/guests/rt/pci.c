/* PCI configuration access through ports 0xCF8/0xCFC and through ECAM (from the MCFG). */
#include "rt.h"

#define CF8 0xCF8
#define CFC 0xCFC

static uint32_t cf8_addr(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
    return 0x80000000u | (bus & 0xff) << 16 | (dev & 0x1f) << 11 | (fn & 7) << 8 | (off & 0xfc);
}

uint32_t pci_cf8_read32(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
    outl(CF8, cf8_addr(bus, dev, fn, off));
    return inl(CFC);
}

void pci_cf8_write32(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint32_t v)
{
    outl(CF8, cf8_addr(bus, dev, fn, off));
    outl(CFC, v);
}

uint16_t pci_cf8_read16(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
    outl(CF8, cf8_addr(bus, dev, fn, off));
    return inw((uint16_t)(CFC + (off & 2)));
}

void pci_cf8_write16(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint16_t v)
{
    outl(CF8, cf8_addr(bus, dev, fn, off));
    outw((uint16_t)(CFC + (off & 2)), v);
}

uint8_t pci_cf8_read8(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
    outl(CF8, cf8_addr(bus, dev, fn, off));
    return inb((uint16_t)(CFC + (off & 3)));
}

void pci_cf8_write8(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint8_t v)
{
    outl(CF8, cf8_addr(bus, dev, fn, off));
    outb((uint16_t)(CFC + (off & 3)), v);
}

bool pci_ecam_available(void)
{
    return acpi_init() >= 0 && acpi.ecam_valid;
}

static uint64_t ecam_addr(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
    if (!pci_ecam_available() || bus < acpi.ecam_bus_start || bus > acpi.ecam_bus_end)
        return 0;
    uint64_t a = acpi.ecam_base + ((uint64_t)(bus - acpi.ecam_bus_start) << 20 | (dev & 0x1f) << 15 |
                                   (fn & 7) << 12 | (off & 0xffc));
    return a < 0x100000000UL ? a : 0;
}

uint32_t pci_ecam_read32(unsigned bus, unsigned dev, unsigned fn, unsigned off)
{
    uint64_t a = ecam_addr(bus, dev, fn, off);
    return a ? mmio_read32(a) : ~0u;
}

void pci_ecam_write32(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint32_t v)
{
    uint64_t a = ecam_addr(bus, dev, fn, off);
    if (a)
        mmio_write32(a, v);
}

unsigned pci_scan_bus(unsigned bus, void (*cb)(const struct pci_dev_info *, void *), void *opaque)
{
    unsigned found = 0;
    for (unsigned dev = 0; dev < 32; dev++) {
        unsigned nfn = 1;
        for (unsigned fn = 0; fn < nfn; fn++) {
            uint32_t id = pci_cf8_read32(bus, dev, fn, 0);
            if ((id & 0xffff) == 0xffff)
                continue;
            struct pci_dev_info d = {
                .bus = (uint8_t)bus, .dev = (uint8_t)dev, .fn = (uint8_t)fn,
                .vendor = (uint16_t)id, .device = (uint16_t)(id >> 16),
                .class_rev = pci_cf8_read32(bus, dev, fn, 8),
                .header_type = (uint8_t)(pci_cf8_read32(bus, dev, fn, 0x0c) >> 16),
            };
            if (fn == 0 && (d.header_type & 0x80))
                nfn = 8;
            found++;
            if (cb)
                cb(&d, opaque);
        }
    }
    return found;
}
