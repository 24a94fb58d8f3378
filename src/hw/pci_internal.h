/* What pci.c, pci_host.c and pci_msi.c share but device models must not use. */
#pragma once
#include "hw/pci.h"

struct pci_host {
    struct machine *m;
    uint32_t config_addr; /* CONFIG_ADDRESS at 0xCF8 */
    struct pci_device *devs[256]; /* bus 0, by devfn */
    struct pci_device bridge;
    struct pci_windows win;
    const struct bus_ops *cf9_ops;
    void *cf9_opaque;
    unsigned intx_refs[4]; /* devices asserting each of GSIs IRQ_PCI_INTX_BASE + 0..3 */
};

/* Make the bus registrations match the BAR registers and the command register. */
void pci_update_mappings(struct pci_device *d);
/* Drive the device's INTx line from its level and the INTx-disable bit. */
void pci_intx_update(struct pci_device *d);
/* Power-on state: config space, BARs unmapped, line low, MSI-X table masked, device hook. */
void pci_device_reset(struct pci_device *d);
void pci_device_unmap_all(struct pci_device *d);

/* pci_msi.c: react to config writes that touched the MSI / MSI-X capabilities. */
void pci_msi_config_written(struct pci_device *d);
void pci_msix_config_written(struct pci_device *d);
void pci_msix_reset(struct pci_device *d);
/* Serve an access to the MSI-X table or PBA inside BAR bar; false if it is the device's. */
bool pci_msix_bar_read(struct pci_device *d, unsigned bar, uint64_t off, unsigned size,
                       uint64_t *val);
bool pci_msix_bar_write(struct pci_device *d, unsigned bar, uint64_t off, unsigned size,
                        uint64_t val);

static inline bool pci_ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}
