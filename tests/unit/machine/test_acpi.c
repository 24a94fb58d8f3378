/* Unit tests for ACPI table generation: structure, checksums and values taken from layout.h. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acpi_walk.h"
#include "machine/acpi.h"
#include "machine/aml.h"
#include "machine/layout.h"

static uint8_t buf[LAYOUT_ACPI_SIZE];

static struct acpi_config make_cfg(unsigned ncpus, const uint32_t *ids)
{
    return (struct acpi_config){
        .ncpus = ncpus,
        .apic_ids = ids,
        .pci_mmio32_base = LAYOUT_PCI_MMIO,
        .pci_mmio32_size = LAYOUT_PCI_MMIO_SIZE,
        .pci_mmio64_base = 8 * GiB,
        .pci_mmio64_size = LAYOUT_PCI_MMIO64_SIZE,
        .pci_io_base = PORT_PCI_IO_WINDOW,
        .pci_io_end = PORT_PCI_IO_WINDOW_END,
        .has_com1 = true,
    };
}

static struct acpi_walk build(const struct acpi_config *cfg, uint64_t gpa)
{
    memset(buf, 0xCC, sizeof(buf)); /* stale bytes must not leak into tables */
    int r = acpi_build_tables(cfg, buf, sizeof(buf), gpa);
    assert_true(r > 0);
    assert_true((size_t)r <= sizeof(buf));
    return (struct acpi_walk){.buf = buf, .len = (size_t)r, .gpa = gpa};
}

/* Finds needle in the table body; returns offset or -1. */
static long find_bytes(const uint8_t *t, size_t len, const void *needle, size_t n)
{
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(t + i, needle, n))
            return (long)i;
    return -1;
}

static void check_rsdp_xsdt(const struct acpi_walk *w)
{
    const uint8_t *r = w->buf;
    assert_memory_equal(r, "RSD PTR ", 8);
    assert_int_equal(r[15], 2);
    assert_int_equal(rd32(r + 20), 36);
    assert_int_equal(sum8(r, 20), 0);
    assert_int_equal(sum8(r, 36), 0);

    const uint8_t *x = walk_xsdt(w);
    assert_non_null(x);
    assert_memory_equal(x, "XSDT", 4);
    assert_int_equal(sum8(x, rd32(x + 4)), 0);
    assert_int_equal((rd32(x + 4) - 36) % 8, 0);

    /* Every XSDT entry lands inside the buffer and is a table we promise, checksummed. */
    const char *want[] = {"FACP", "APIC", "MCFG"};
    uint32_t n = (rd32(x + 4) - 36) / 8;
    assert_int_equal(n, 3);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *t = walk_at(w, rd64(x + 36 + 8 * i), 0);
        assert_non_null(t);
        assert_int_equal(sum8(t, rd32(t + 4)), 0);
        assert_int_equal(IS_ALIGNED(rd64(x + 36 + 8 * i), 8), 1);
    }
    for (size_t i = 0; i < 3; i++)
        assert_non_null(walk_find(w, want[i]));

    const uint8_t *d = walk_dsdt(w);
    assert_non_null(d);
    assert_memory_equal(d, "DSDT", 4);
    assert_int_equal(d[8], 2); /* 64-bit integers */
    assert_int_equal(sum8(d, rd32(d + 4)), 0);

    const uint8_t *f = walk_facs(w);
    assert_non_null(f);
    assert_memory_equal(f, "FACS", 4);
    assert_int_equal(rd32(f + 4), 64);
    assert_int_equal(rd64(walk_find(w, "FACP") + 132) % 64, 0);
}

static void check_fadt(const struct acpi_walk *w)
{
    const uint8_t *t = walk_find(w, "FACP");
    assert_non_null(t);
    assert_int_equal(rd32(t + 4), 276);
    assert_int_equal(t[8], 6);
    /* 32-bit and 64-bit FACS/DSDT pointers agree (tables are below 4 GiB here). */
    assert_int_equal(rd32(t + 36), rd64(t + 132));
    assert_int_equal(rd32(t + 40), rd64(t + 140));
    assert_int_equal(rd16(t + 46), IRQ_ACPI_SCI);
    assert_int_equal(rd32(t + 48), 0); /* SMI_CMD: always in ACPI mode */
    assert_int_equal(rd32(t + 56), PORT_ACPI_PM1_EVT);
    assert_int_equal(rd32(t + 60), 0);
    assert_int_equal(rd32(t + 64), PORT_ACPI_PM1_CNT);
    assert_int_equal(rd32(t + 76), PORT_ACPI_PM_TMR);
    assert_int_equal(rd32(t + 80), PORT_ACPI_GPE0);
    assert_int_equal(t[88], 4);
    assert_int_equal(t[89], 2);
    assert_int_equal(t[91], 4);
    assert_int_equal(t[92], 4);

    uint16_t boot = rd16(t + 109);
    assert_true(boot & (1u << 1)); /* 8042 */
    assert_true(boot & (1u << 2)); /* VGA not present */

    uint32_t flags = rd32(t + 112);
    assert_false(flags & (1u << 4));  /* PWR_BUTTON clear: fixed-feature power button */
    assert_true(flags & (1u << 5));   /* SLP_BUTTON: none */
    assert_true(flags & (1u << 8));   /* TMR_VAL_EXT */
    assert_true(flags & (1u << 10));  /* RESET_REG_SUP */
    assert_false(flags & (1u << 20)); /* not HW_REDUCED_ACPI */

    /* Reset register: I/O port, 8 bits, value 6. */
    assert_int_equal(t[116], 1);
    assert_int_equal(t[117], 8);
    assert_int_equal(rd64(t + 120), PORT_RESET_CONTROL);
    assert_int_equal(t[128], 0x06);

    /* X_ blocks mirror the legacy ones as I/O-space GAS with the block widths. */
    struct {
        unsigned off;
        uint64_t port;
        unsigned bits;
    } gas[] = {{148, PORT_ACPI_PM1_EVT, 32},
               {172, PORT_ACPI_PM1_CNT, 16},
               {208, PORT_ACPI_PM_TMR, 32},
               {220, PORT_ACPI_GPE0, 32}};
    for (size_t i = 0; i < ARRAY_SIZE(gas); i++) {
        assert_int_equal(t[gas[i].off], 1);
        assert_int_equal(t[gas[i].off + 1], gas[i].bits);
        assert_int_equal(rd64(t + gas[i].off + 4), gas[i].port);
    }
    /* PM1b and GPE1 absent. */
    assert_int_equal(rd64(t + 160 + 4), 0);
    assert_int_equal(rd64(t + 232 + 4), 0);
}

static void check_madt(const struct acpi_walk *w, unsigned ncpus, const uint32_t *ids)
{
    const uint8_t *t = walk_find(w, "APIC");
    assert_non_null(t);
    uint32_t len = rd32(t + 4);
    assert_int_equal(rd32(t + 36), LAYOUT_LAPIC);
    assert_int_equal(rd32(t + 40) & 1, 1); /* PCAT_COMPAT */

    unsigned ncpu_seen = 0, nioapic = 0, niso = 0, nnmi = 0;
    bool irq0 = false, sci = false;
    for (uint32_t off = 44; off < len;) {
        const uint8_t *e = t + off;
        assert_true(off + 2 <= len);
        assert_true(e[1] >= 2 && off + e[1] <= len);
        switch (e[0]) {
        case 0:
            assert_int_equal(e[1], 8);
            assert_true(ncpu_seen < ncpus);
            assert_int_equal(e[2], ncpu_seen); /* UID = index */
            assert_int_equal(e[3], ids[ncpu_seen]);
            assert_int_equal(rd32(e + 4) & 1, 1);
            ncpu_seen++;
            break;
        case 9:
            assert_int_equal(e[1], 16);
            assert_true(ncpu_seen < ncpus);
            assert_int_equal(rd32(e + 4), ids[ncpu_seen]);
            assert_int_equal(rd32(e + 8) & 1, 1);
            assert_int_equal(rd32(e + 12), ncpu_seen);
            ncpu_seen++;
            break;
        case 1:
            assert_int_equal(e[1], 12);
            for (unsigned i = 0; i < ncpus; i++)
                assert_int_not_equal(e[2], ids[i]);
            assert_int_equal(rd32(e + 4), LAYOUT_IOAPIC);
            assert_int_equal(rd32(e + 8), 0);
            nioapic++;
            break;
        case 2:
            assert_int_equal(e[1], 10);
            assert_int_equal(e[2], 0);
            if (e[3] == 0) {
                assert_int_equal(rd32(e + 4), 2);
                assert_int_equal(rd16(e + 8), 0x0005); /* edge, active high */
                irq0 = true;
            } else if (e[3] == IRQ_ACPI_SCI) {
                assert_int_equal(rd32(e + 4), IRQ_ACPI_SCI);
                assert_int_equal(rd16(e + 8), 0x000D); /* level, active high */
                sci = true;
            }
            niso++;
            break;
        case 4:
            assert_int_equal(e[1], 6);
            assert_int_equal(e[2], 0xFF);
            assert_int_equal(e[5], 1); /* LINT1 */
            nnmi++;
            break;
        }
        off += e[1];
    }
    assert_int_equal(ncpu_seen, ncpus);
    assert_int_equal(nioapic, 1);
    assert_int_equal(niso, 2);
    assert_true(irq0 && sci);
    assert_int_equal(nnmi, 1);
}

static void check_mcfg(const struct acpi_walk *w)
{
    const uint8_t *t = walk_find(w, "MCFG");
    assert_non_null(t);
    assert_int_equal(rd32(t + 4), 36 + 8 + 16);
    assert_int_equal(rd64(t + 44), LAYOUT_ECAM);
    assert_int_equal(rd16(t + 52), 0);
    assert_int_equal(t[54], 0);
    assert_int_equal(t[55], 255);
    assert_int_equal(LAYOUT_ECAM_SIZE, 256 * MiB); /* ECAM: 1 MiB per bus */
}

static void check_dsdt(const struct acpi_walk *w, bool com1)
{
    const uint8_t *d = walk_dsdt(w);
    size_t len = rd32(d + 4);

    /* \_S5_ = Package(4) { SLP_TYP, SLP_TYP, 0, 0 } */
    uint8_t s5[64];
    struct aml a;
    aml_init(&a);
    aml_name_decl(&a, "\\_S5_");
    aml_package_begin(&a, 4);
    aml_integer(&a, ACPI_S5_SLP_TYP);
    aml_integer(&a, ACPI_S5_SLP_TYP);
    aml_integer(&a, 0);
    aml_integer(&a, 0);
    aml_end(&a);
    assert_int_equal(aml_finish(&a), 0);
    assert_true(a.len <= sizeof(s5));
    memcpy(s5, a.data, a.len);
    assert_true(find_bytes(d, len, s5, a.len) > 0);
    aml_release(&a);

    uint32_t pnp0a08 = aml_eisaid("PNP0A08"), pnp0501 = aml_eisaid("PNP0501");
    uint8_t id[5] = {0x0C};
    memcpy(id + 1, &pnp0a08, 4);
    assert_true(find_bytes(d, len, id, 5) > 0);
    memcpy(id + 1, &pnp0501, 4);
    assert_int_equal(find_bytes(d, len, id, 5) > 0, com1);

    /* The ECAM reservation: Memory32Fixed(ReadWrite, LAYOUT_ECAM, LAYOUT_ECAM_SIZE). */
    uint8_t ecam[12] = {0x86, 9, 0, 1};
    uint32_t base = (uint32_t)LAYOUT_ECAM, size = (uint32_t)LAYOUT_ECAM_SIZE;
    memcpy(ecam + 4, &base, 4);
    memcpy(ecam + 8, &size, 4);
    assert_true(find_bytes(d, len, ecam, sizeof(ecam)) > 0);
}

static void check_all(unsigned ncpus, const uint32_t *ids, uint64_t gpa)
{
    struct acpi_config cfg = make_cfg(ncpus, ids);
    struct acpi_walk w = build(&cfg, gpa);
    check_rsdp_xsdt(&w);
    check_fadt(&w);
    check_madt(&w, ncpus, ids);
    check_mcfg(&w);
    check_dsdt(&w, true);
}

static void test_one_cpu(void **state)
{
    uint32_t ids[] = {0};
    check_all(1, ids, LAYOUT_ACPI);
}

static void test_two_cpus(void **state)
{
    uint32_t ids[] = {0, 1};
    check_all(2, ids, LAYOUT_ACPI);
}

static void test_64_cpus(void **state)
{
    uint32_t ids[64];
    for (unsigned i = 0; i < 64; i++)
        ids[i] = i;
    check_all(64, ids, LAYOUT_ACPI);
}

static void test_sparse_apic_ids(void **state)
{
    /* IDs from a topology with gaps; the IOAPIC must avoid all of them. */
    uint32_t ids[] = {0, 2, 4, 6, 1};
    check_all(5, ids, LAYOUT_ACPI);
}

static void test_x2apic_ids(void **state)
{
    uint32_t ids[] = {0, 1, 300};
    check_all(3, ids, LAYOUT_ACPI);
    const uint8_t *m =
        walk_find(&(struct acpi_walk){.buf = buf, .len = sizeof(buf), .gpa = LAYOUT_ACPI}, "APIC");
    /* x2APIC CPUs need the x2APIC NMI entry (type 10) too. */
    uint8_t nmi[4] = {10, 12, 0, 0};
    assert_true(find_bytes(m, rd32(m + 4), nmi, 4) > 0);
}

static void test_unaligned_gpa(void **state)
{
    /* FACS alignment is about guest addresses, not buffer offsets. */
    uint32_t ids[] = {0, 1};
    check_all(2, ids, LAYOUT_ACPI + 0x10);
}

static void test_no_com1_no_mmio64(void **state)
{
    uint32_t ids[] = {0};
    struct acpi_config cfg = make_cfg(1, ids);
    cfg.has_com1 = false;
    cfg.pci_mmio64_size = 0;
    struct acpi_walk w = build(&cfg, LAYOUT_ACPI);
    check_rsdp_xsdt(&w);
    check_dsdt(&w, false);
    const uint8_t *d = walk_dsdt(&w);
    /* No QWordMemory descriptor appears when there is no 64-bit window. */
    uint8_t qw[3] = {0x8A, 0x2B, 0x00};
    assert_int_equal(find_bytes(d, rd32(d + 4), qw, 3), -1);
}

static void test_errors(void **state)
{
    uint32_t ids[64];
    for (unsigned i = 0; i < 64; i++)
        ids[i] = i;
    struct acpi_config cfg = make_cfg(64, ids);
    int used = acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI);
    assert_true(used > 0);
    /* Every length short of what is needed fails cleanly, never writing past len. */
    static uint8_t small[LAYOUT_ACPI_SIZE + 16];
    for (size_t len = 0; len < (size_t)used; len += (len < 64 ? 1 : 97)) {
        memset(small, 0x5A, sizeof(small));
        assert_int_equal(acpi_build_tables(&cfg, small, len, LAYOUT_ACPI), -ENOSPC);
        for (size_t i = len; i < len + 16; i++)
            assert_int_equal(small[i], 0x5A);
    }
    assert_int_equal(acpi_build_tables(&cfg, small, (size_t)used, LAYOUT_ACPI), used);

    cfg.ncpus = 0;
    assert_int_equal(acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI), -EINVAL);
    cfg.ncpus = 2;
    cfg.apic_ids = NULL;
    assert_int_equal(acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI), -EINVAL);
    uint32_t dup[] = {3, 3};
    cfg.apic_ids = dup;
    assert_int_equal(acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI), -EINVAL);
    cfg.apic_ids = ids;
    cfg.pci_io_base = 0x2000;
    cfg.pci_io_end = 0x1000;
    assert_int_equal(acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI), -EINVAL);
    cfg = make_cfg(2, ids);
    cfg.pci_mmio32_base = 0xF0000000;
    cfg.pci_mmio32_size = 0x20000000; /* crosses 4 GiB */
    assert_int_equal(acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI), -EINVAL);
    cfg = make_cfg(2, ids);
    cfg.pci_mmio64_base = UINT64_MAX - 10;
    assert_int_equal(acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_cpu),           cmocka_unit_test(test_two_cpus),
        cmocka_unit_test(test_64_cpus),           cmocka_unit_test(test_sparse_apic_ids),
        cmocka_unit_test(test_x2apic_ids),        cmocka_unit_test(test_unaligned_gpa),
        cmocka_unit_test(test_no_com1_no_mmio64), cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
