/* Validates the ACPI tables the VMM builds, checks the PM timer runs, then powers off through S5. */
#include "rt/rt.h"

const char guest_name[] = "acpi";

static const char *sig(const struct acpi_header *h)
{
    static char s[5];
    memcpy(s, h->sig, 4);
    s[4] = '\0';
    return s;
}

void guest_main(void)
{
    uint64_t expect_cpus;
    if (!cmdline_get_u64("expect_cpus", &expect_cpus))
        test_fail("no expect_cpus=N on the command line \"%s\"", rt_boot.cmdline);
    /* acpi_init() validates the checksum of the RSDP, the root table and every table it lists. */
    if (acpi_init() < 0)
        test_fail("%s", acpi.error);
    const struct acpi_rsdp *r = acpi.rsdp;
    rt_printf("RSDP at %p revision %u, tables:", r, r->revision);
    for (unsigned i = 0; i < acpi.ntables; i++)
        rt_printf(" %s", sig(acpi.tables[i]));
    rt_printf("\n");
    if (!cmdline_has("allow_rsdt")) {
        CHECK(r->revision >= 2 && r->xsdt, "RSDP revision %u, want 2 with an XSDT", r->revision);
        CHECK(!memcmp(acpi.tables[0]->sig, "XSDT", 4), "root table is %s, want XSDT", sig(acpi.tables[0]));
    }
    CHECK(acpi.ntables < ACPI_MAX_TABLES, "too many tables (%u)", acpi.ntables);

    CHECK(acpi.madt, "no MADT");
    CHECK(acpi.ncpus == expect_cpus, "MADT lists %u enabled local APICs, expected %lu", acpi.ncpus, expect_cpus);
    CHECK(acpi.nioapics >= 1, "MADT has no I/O APIC entry");
    CHECK(acpi.lapic_addr, "MADT local APIC address is 0");

    CHECK(acpi.fadt, "no FADT");
    CHECK(acpi.pm1a_cnt, "FADT has no PM1a control block");
    CHECK(acpi.pm1a_evt, "FADT has no PM1a event block");
    CHECK(acpi.pm_tmr, "FADT has no PM timer block");
    CHECK(acpi.reset_valid, "FADT has no reset register (or RESET_REG_SUP is clear)");
    CHECK(acpi.reset_reg.space == 1 || acpi.reset_reg.space == 0 || acpi.reset_reg.space == 2,
          "reset register is in address space %u", acpi.reset_reg.space);
    CHECK(acpi.mcfg, "no MCFG");
    CHECK(acpi.ecam_valid, "MCFG has no usable segment 0 entry");
    CHECK(acpi.dsdt, "no valid DSDT in the FADT");
    CHECK(acpi.s5_slp_typ >= 0, "DSDT has no \\_S5 package");
    rt_printf("PM1a_CNT %x PM_TMR %x reset %u:%lx=%x S5 SLP_TYP %d ECAM %lx buses %u-%u\n", acpi.pm1a_cnt,
              acpi.pm_tmr, acpi.reset_reg.space, acpi.reset_reg.address, acpi.reset_value, acpi.s5_slp_typ,
              acpi.ecam_base, acpi.ecam_bus_start, acpi.ecam_bus_end);

    /* 3.58 MHz: a handful of reads must see it move, and it must not run backwards. */
    uint32_t t0 = acpi_pm_timer_read() & 0xffffff, t = t0;
    int moved = 0;
    for (int i = 0; i < 2000 && !moved; i++) {
        t = acpi_pm_timer_read() & 0xffffff;
        moved = t != t0;
    }
    CHECK(moved, "PM timer stays at %x", t0);
    uint32_t d = (t - t0) & 0xffffff;
    CHECK(d < 0x800000, "PM timer went backwards (%x -> %x)", t0, t);
    rt_printf("PM timer %x -> %x\n", t0, t);
    /* Passing powers off through \_S5: the runner checks the VMM exits with status 0. */
}
