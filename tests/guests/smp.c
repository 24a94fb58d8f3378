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

    /* With expect_threads/expect_cores, CPUID's topology must match -smp (leaf 0xB). */
    uint64_t threads, cores;
    if (cmdline_get_u64("expect_threads", &threads) && cmdline_get_u64("expect_cores", &cores)) {
        cpuid(0, 0, r);
        CHECK(r[0] >= 0xB, "CPUID has no topology leaf 0xB (max leaf %x)", r[0]);
        cpuid(0xB, 0, r);
        CHECK((r[1] & 0xFFFF) == threads && ((r[2] >> 8) & 0xFF) == 1,
              "CPUID 0xB.0 says %u threads per core (type %u), expected %lu", r[1] & 0xFFFF,
              (r[2] >> 8) & 0xFF, threads);
        CHECK(r[3] == self, "CPUID 0xB x2APIC ID %u differs from the local APIC ID %u", r[3], self);
        cpuid(0xB, 1, r);
        CHECK((r[1] & 0xFFFF) == threads * cores && ((r[2] >> 8) & 0xFF) == 2,
              "CPUID 0xB.1 says %u logical CPUs per package (type %u), expected %lu",
              r[1] & 0xFFFF, (r[2] >> 8) & 0xFF, threads * cores);
        /* Leaf 1's count is defined only with the HTT flag, which a package of one may lack. */
        cpuid(1, 0, r);
        if (threads * cores > 1)
            CHECK((r[3] & (1u << 28)) && ((r[1] >> 16) & 0xFF) >= threads * cores,
                  "CPUID 1 reports %u logical CPUs per package (HTT %u), expected %lu",
                  (r[1] >> 16) & 0xFF, (r[3] >> 28) & 1, threads * cores);
        rt_printf("CPUID topology: %lu threads x %lu cores per package\n", threads, cores);
    }

    unsigned up = smp_start_aps();
    rt_printf("%u of %lu CPUs running\n", up, expect);
    CHECK(up == expect, "%u of %lu CPUs came up", up, expect);
    for (unsigned i = 0; i < acpi.ncpus; i++) {
        uint32_t id = acpi.apic_ids[i];
        if (id != self)
            CHECK(smp_ap_seen[id / 64] & (1ULL << (id % 64)), "the CPU with APIC ID %u did not check in", id);
    }
}
