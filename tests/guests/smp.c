/* Brings up every CPU with INIT-SIPI-SIPI and checks the count against the command line and the MADT. */
#include "rt/rt.h"

const char guest_name[] = "smp";

void guest_main(void)
{
    uint64_t expect;
    if (!cmdline_get_u64("expect_cpus", &expect) || !expect || expect > 255)
        test_fail("no valid expect_cpus=N on the command line \"%s\"", rt_boot.cmdline);
    if (acpi_init() < 0)
        test_fail("ACPI: %s", acpi.error);
    CHECK(acpi.madt, "no MADT");
    CHECK(acpi.ncpus == expect, "MADT lists %u enabled CPUs, expected %lu", acpi.ncpus, expect);
    uint32_t self = lapic_id();
    bool self_listed = false;
    for (unsigned i = 0; i < acpi.ncpus; i++) {
        for (unsigned j = 0; j < i; j++)
            CHECK(acpi.apic_ids[i] != acpi.apic_ids[j], "APIC ID %u appears twice in the MADT", acpi.apic_ids[i]);
        if (acpi.apic_ids[i] == self)
            self_listed = true;
    }
    CHECK(self_listed, "the boot CPU's APIC ID %u is not in the MADT", self);
    uint32_t r[4];
    cpuid(1, 0, r);
    CHECK(r[1] >> 24 == self, "CPUID initial APIC ID %u differs from the local APIC ID %u", r[1] >> 24, self);

    unsigned up = smp_start_aps();
    rt_printf("%u of %lu CPUs running\n", up, expect);
    CHECK(up == expect, "%u of %lu CPUs came up", up, expect);
    for (unsigned i = 0; i < acpi.ncpus; i++) {
        uint32_t id = acpi.apic_ids[i];
        if (id != self)
            CHECK(smp_ap_seen[id / 64] & (1ULL << (id % 64)), "the CPU with APIC ID %u did not check in", id);
    }
}
