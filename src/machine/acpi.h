/* ACPI table generation for the x86 "pc" machine: RSDP, XSDT, FADT, FACS, MADT, DSDT, MCFG. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acpi_config {
    unsigned ncpus;
    const uint32_t *apic_ids;                  /* ncpus entries */
    uint64_t pci_mmio32_base, pci_mmio32_size; /* 32-bit BAR window */
    uint64_t pci_mmio64_base, pci_mmio64_size; /* 64-bit BAR window (size 0: none) */
    uint16_t pci_io_base, pci_io_end;          /* PCI I/O window (inclusive end) */
    bool has_com1;
};

/* Builds RSDP (at offset 0 of buf), XSDT, FADT, FACS, MADT, DSDT, MCFG into buf, which the guest
 * sees at guest-physical address gpa. Returns bytes used, or -ENOSPC. -EINVAL for a bad config:
 * no CPUs or more than 4096, duplicate APIC IDs, a 32-bit window that starts at 0 or crosses
 * 4 GiB, a 64-bit window that wraps, or an I/O window that is inverted or starts below 0xD00. */
int acpi_build_tables(const struct acpi_config *cfg, void *buf, size_t len, uint64_t gpa);
