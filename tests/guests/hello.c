/* The default demo guest: reports what the virtual machine looks like from inside, then powers off. */
#include "rt/rt.h"

const char guest_name[] = "hello";

static void print_pci(const struct pci_dev_info *d, void *opaque)
{
    (void)opaque;
    rt_printf("  %02x:%02x.%u %04x:%04x class %06x\n", d->bus, d->dev, d->fn, d->vendor, d->device,
              d->class_rev >> 8);
}

static void print_cpu(void)
{
    uint32_t r[4];
    char vendor[13], brand[49];
    cpuid(0, 0, r);
    memcpy(vendor, &r[1], 4);
    memcpy(vendor + 4, &r[3], 4);
    memcpy(vendor + 8, &r[2], 4);
    vendor[12] = '\0';
    brand[0] = '\0';
    cpuid(0x80000000, 0, r);
    if (r[0] >= 0x80000004) {
        for (uint32_t i = 0; i < 3; i++) {
            cpuid(0x80000002 + i, 0, r);
            memcpy(brand + 16 * i, r, 16);
        }
        brand[48] = '\0';
    }
    const char *b = brand;
    while (*b == ' ')
        b++;
    rt_printf("CPU: %s%s%s\n", vendor, *b ? ", " : "", b);
}

void guest_main(void)
{
    rt_printf("vmkit default guest\n");
    print_cpu();
    uint64_t ram = 0;
    for (unsigned i = 0; i < rt_boot.memmap_entries; i++)
        if (rt_boot.memmap[i].type == RT_MEM_RAM)
            ram += rt_boot.memmap[i].size;
    rt_printf("Memory: %lu MiB RAM in %u memory map entries\n", ram >> 20, rt_boot.memmap_total);
    rt_printf("Command line: \"%s\"\n", rt_boot.cmdline);
    if (acpi_init() < 0)
        test_fail("ACPI: %s", acpi.error);
    rt_printf("ACPI tables:");
    for (unsigned i = 0; i < acpi.ntables; i++)
        rt_printf(" %c%c%c%c", acpi.tables[i]->sig[0], acpi.tables[i]->sig[1], acpi.tables[i]->sig[2],
                  acpi.tables[i]->sig[3]);
    rt_printf("\n");
    if (!acpi.madt)
        test_fail("no MADT: cannot find the CPUs");
    unsigned up = smp_start_aps();
    rt_printf("CPUs: %u in the MADT, %u running\n", acpi.ncpus, up);
    if (up != acpi.ncpus)
        test_fail("only %u of %u CPUs came up", up, acpi.ncpus);
    rt_printf("PCI bus 0:\n");
    pci_scan_bus(0, print_pci, NULL);
}
