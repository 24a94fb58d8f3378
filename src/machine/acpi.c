/* ACPI table generation for the x86 "pc" machine: RSDP, XSDT, FADT, FACS, MADT, DSDT, MCFG. */
#include "machine/acpi.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/types.h>

#include "base/util.h"
#include "machine/aml.h"
#include "machine/layout.h"

#define ACPI_OEM_ID "VMKIT "         /* 6 bytes */
#define ACPI_OEM_TABLE_ID "VMKITPC " /* 8 bytes */
#define ACPI_CREATOR_ID "VMKT"
#define ACPI_HDR_LEN 36

/* Above this the DSDT's "Cxxx" processor names (3 hex digits) run out. */
#define ACPI_MAX_CPUS 4096

/* FADT (ACPI 6.x, table 5.9) offsets and values. */
#define FADT_REVISION 6
#define FADT_MINOR 0
#define FADT_LEN 276
#define FADT_F_WBINVD (1u << 0)
#define FADT_F_PROC_C1 (1u << 2)
#define FADT_F_SLP_BUTTON (1u << 5)
#define FADT_F_FIX_RTC (1u << 6)
#define FADT_F_RTC_S4 (1u << 7)
#define FADT_F_TMR_VAL_EXT (1u << 8)
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_BOOT_LEGACY_DEVICES (1u << 0)
#define FADT_BOOT_8042 (1u << 1)
#define FADT_BOOT_VGA_NOT_PRESENT (1u << 2)
#define RTC_CMOS_CENTURY 0x32 /* the PC/AT CMOS century byte */
#define RESET_VALUE 0x06      /* CF9: full reset (bit 2) + system reset (bit 1) */

/* Generic Address Structure fields. */
#define GAS_SPACE_IO 1
#define GAS_ACCESS_BYTE 1
#define GAS_ACCESS_WORD 2
#define GAS_ACCESS_DWORD 3

/* MADT entry types and flags. */
#define MADT_LOCAL_APIC 0
#define MADT_IOAPIC 1
#define MADT_INT_SRC_OVERRIDE 2
#define MADT_LOCAL_APIC_NMI 4
#define MADT_LOCAL_X2APIC 9
#define MADT_LOCAL_X2APIC_NMI 10
#define MADT_PCAT_COMPAT 1u
#define MADT_LAPIC_ENABLED 1u
#define MPS_POLARITY_HIGH 0x1
#define MPS_TRIGGER_EDGE (0x1 << 2)
#define MPS_TRIGGER_LEVEL (0x3 << 2)

/* The output buffer with the guest-physical address of its first byte. */
struct acpi_out {
    uint8_t *p;
    size_t len, used;
    uint64_t gpa;
};

static void w8(uint8_t *p, uint8_t v)
{
    p[0] = v;
}

static void w16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void w32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void w64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t acpi_sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

/* Reserves n zeroed bytes whose guest address is a multiple of align; offset, or -ENOSPC. */
static ssize_t acpi_alloc(struct acpi_out *o, size_t n, size_t align)
{
    uint64_t addr = ALIGN_UP(o->gpa + o->used, (uint64_t)align);
    uint64_t off = addr - o->gpa;
    if (off > o->len || n > o->len - off)
        return -ENOSPC;
    memset(o->p + off, 0, n);
    o->used = off + n;
    return (ssize_t)off;
}

static uint64_t acpi_addr(const struct acpi_out *o, size_t off)
{
    return o->gpa + off;
}

/* The 32-bit copies of pointers are 0 when the table lies above 4 GiB (only the X_ copy then). */
static uint32_t acpi_addr32(const struct acpi_out *o, size_t off)
{
    uint64_t a = acpi_addr(o, off);
    return a > UINT32_MAX ? 0 : (uint32_t)a;
}

static void acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(t, sig, 4);
    w32(t + 4, len);
    w8(t + 8, rev);
    memcpy(t + 10, ACPI_OEM_ID, 6);
    memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
    w32(t + 24, 1); /* OEM revision */
    memcpy(t + 28, ACPI_CREATOR_ID, 4);
    w32(t + 32, 1); /* creator revision */
}

static void acpi_checksum(uint8_t *t)
{
    uint32_t len =
        (uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;
    t[9] = 0;
    t[9] = (uint8_t)(0 - acpi_sum(t, len));
}

static void acpi_gas(uint8_t *p, uint8_t space, uint8_t bits, uint8_t access, uint64_t addr)
{
    w8(p, space);
    w8(p + 1, bits);
    w8(p + 2, 0);
    w8(p + 3, access);
    w64(p + 4, addr);
}

/* --- DSDT --- */

static void dsdt_isa_device(struct aml *a, const char *name, const char *hid)
{
    aml_device_begin(a, name);
    aml_name_decl(a, "_HID");
    aml_eisaid_integer(a, hid);
}

static void dsdt_pci0(struct aml *a, const struct acpi_config *cfg)
{
    aml_device_begin(a, "PCI0");
    aml_name_decl(a, "_HID");
    aml_eisaid_integer(a, "PNP0A08");
    aml_name_decl(a, "_CID");
    aml_eisaid_integer(a, "PNP0A03");
    aml_name_decl(a, "_SEG");
    aml_integer(a, 0);
    aml_name_decl(a, "_BBN");
    aml_integer(a, 0);
    aml_name_decl(a, "_UID");
    aml_integer(a, 0);

    aml_name_decl(a, "_CRS");
    aml_buffer_begin(a);
    aml_res_word_bus_number(a, 0, (uint16_t)(LAYOUT_ECAM_SIZE / MiB - 1));
    /* The root bridge itself decodes CF8-CFF; everything else below is forwarded. */
    aml_res_io(a, PORT_PCI_CONFIG_ADDR, PORT_PCI_CONFIG_ADDR, 1, 8);
    aml_res_word_io(a, 0, PORT_PCI_CONFIG_ADDR - 1);
    aml_res_word_io(a, cfg->pci_io_base, cfg->pci_io_end);
    if (cfg->pci_mmio32_size)
        aml_res_dword_memory(a, AML_NONCACHEABLE, (uint32_t)cfg->pci_mmio32_base,
                             (uint32_t)(cfg->pci_mmio32_base + cfg->pci_mmio32_size - 1));
    if (cfg->pci_mmio64_size)
        aml_res_qword_memory(a, AML_CACHEABLE, cfg->pci_mmio64_base,
                             cfg->pci_mmio64_base + cfg->pci_mmio64_size - 1);
    aml_res_end(a);
    aml_end(a);

    /* INTx of every slot, swizzled over four GSIs like a PC's PIRQ routing; Source 0 means
     * SourceIndex is a GSI (level, active low). */
    aml_name_decl(a, "_PRT");
    aml_package_begin(a, 32 * 4);
    for (unsigned slot = 0; slot < 32; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            aml_package_begin(a, 4);
            aml_integer(a, ((uint64_t)slot << 16) | 0xFFFF);
            aml_integer(a, pin);
            aml_integer(a, 0);
            aml_integer(a, IRQ_PCI_INTX_BASE + ((slot + pin) & 3));
            aml_end(a);
        }
    }
    aml_end(a);
    aml_end(a); /* PCI0 */
}

static int dsdt_build(struct aml *a, const struct acpi_config *cfg)
{
    /* \_S5: the sleep type OSPM writes to PM1a_CNT.SLP_TYP to power off. */
    aml_name_decl(a, "\\_S5_");
    aml_package_begin(a, 4);
    aml_integer(a, ACPI_S5_SLP_TYP);
    aml_integer(a, ACPI_S5_SLP_TYP);
    aml_integer(a, 0);
    aml_integer(a, 0);
    aml_end(a);

    aml_scope_begin(a, "\\_SB");
    dsdt_pci0(a, cfg);

    /* Linux uses MCFG only when the ECAM range is also reserved by a motherboard device. */
    dsdt_isa_device(a, "MBRD", "PNP0C02");
    aml_name_decl(a, "_UID");
    aml_integer(a, 0);
    aml_name_decl(a, "_CRS");
    aml_buffer_begin(a);
    aml_res_memory32_fixed(a, true, (uint32_t)LAYOUT_ECAM, (uint32_t)LAYOUT_ECAM_SIZE);
    aml_res_end(a);
    aml_end(a);
    aml_end(a);

    if (cfg->has_com1) {
        dsdt_isa_device(a, "COM1", "PNP0501");
        aml_name_decl(a, "_UID");
        aml_integer(a, 1);
        aml_name_decl(a, "_CRS");
        aml_buffer_begin(a);
        aml_res_io(a, PORT_COM1, PORT_COM1, 1, 8);
        aml_res_irq_noflags(a, IRQ_COM1);
        aml_res_end(a);
        aml_end(a);
        aml_end(a);
    }

    dsdt_isa_device(a, "PS2K", "PNP0303");
    aml_name_decl(a, "_CRS");
    aml_buffer_begin(a);
    aml_res_io(a, PORT_I8042_DATA, PORT_I8042_DATA, 1, 1);
    aml_res_io(a, PORT_I8042_CMD, PORT_I8042_CMD, 1, 1);
    aml_res_irq_noflags(a, IRQ_I8042_KBD);
    aml_res_end(a);
    aml_end(a);
    aml_end(a);

    /* Without the AUX port device Linux's i8042 PnP probe disables the mouse port. */
    dsdt_isa_device(a, "PS2M", "PNP0F13");
    aml_name_decl(a, "_CRS");
    aml_buffer_begin(a);
    aml_res_irq_noflags(a, IRQ_I8042_AUX);
    aml_res_end(a);
    aml_end(a);
    aml_end(a);

    dsdt_isa_device(a, "RTC", "PNP0B00");
    aml_name_decl(a, "_CRS");
    aml_buffer_begin(a);
    aml_res_io(a, PORT_RTC, PORT_RTC, 1, 2);
    aml_res_irq_noflags(a, IRQ_RTC);
    aml_res_end(a);
    aml_end(a);
    aml_end(a);

    /* Processor devices; _UID matches the MADT entry's ACPI processor UID. */
    for (unsigned i = 0; i < cfg->ncpus; i++) {
        static const char hex[] = "0123456789ABCDEF";
        char name[5] = {'C', hex[(i >> 8) & 15], hex[(i >> 4) & 15], hex[i & 15], 0};
        aml_device_begin(a, name);
        aml_name_decl(a, "_HID");
        aml_string(a, "ACPI0007");
        aml_name_decl(a, "_UID");
        aml_integer(a, i);
        aml_end(a);
    }

    aml_end(a); /* \_SB */
    return aml_finish(a);
}

/* --- fixed tables --- */

static ssize_t build_dsdt(struct acpi_out *o, const struct acpi_config *cfg)
{
    struct aml a;
    aml_init(&a);
    int r = dsdt_build(&a, cfg);
    if (r < 0) {
        aml_release(&a);
        return r;
    }
    ssize_t off = acpi_alloc(o, ACPI_HDR_LEN + a.len, 8);
    if (off >= 0) {
        uint8_t *t = o->p + off;
        /* Revision 2: integers are 64 bits wide (the 64-bit BAR window needs them). */
        acpi_header(t, "DSDT", (uint32_t)(ACPI_HDR_LEN + a.len), 2);
        memcpy(t + ACPI_HDR_LEN, a.data, a.len);
        acpi_checksum(t);
    }
    aml_release(&a);
    return off;
}

static ssize_t build_facs(struct acpi_out *o)
{
    ssize_t off = acpi_alloc(o, 64, 64);
    if (off < 0)
        return off;
    uint8_t *t = o->p + off;
    memcpy(t, "FACS", 4);
    w32(t + 4, 64);
    w8(t + 32, 2); /* version */
    return off;
}

static ssize_t build_fadt(struct acpi_out *o, size_t facs, size_t dsdt)
{
    ssize_t off = acpi_alloc(o, FADT_LEN, 8);
    if (off < 0)
        return off;
    uint8_t *t = o->p + off;
    acpi_header(t, "FACP", FADT_LEN, FADT_REVISION);
    w32(t + 36, acpi_addr32(o, facs));
    w32(t + 40, acpi_addr32(o, dsdt));
    w8(t + 45, 0); /* preferred PM profile: unspecified */
    w16(t + 46, IRQ_ACPI_SCI);
    /* SMI_CMD, ACPI_ENABLE, ACPI_DISABLE stay 0: the machine is always in ACPI mode. */
    w32(t + 56, PORT_ACPI_PM1_EVT);
    w32(t + 64, PORT_ACPI_PM1_CNT);
    w32(t + 76, PORT_ACPI_PM_TMR);
    w32(t + 80, PORT_ACPI_GPE0);
    w8(t + 88, 4); /* PM1_EVT_LEN */
    w8(t + 89, 2); /* PM1_CNT_LEN */
    w8(t + 91, 4); /* PM_TMR_LEN */
    w8(t + 92, 4); /* GPE0_BLK_LEN: 2 status + 2 enable bytes */
    /* No C2/C3: latencies above the limits say "not supported". */
    w16(t + 96, 101);
    w16(t + 98, 1001);
    w8(t + 108, RTC_CMOS_CENTURY);
    w16(t + 109, FADT_BOOT_LEGACY_DEVICES | FADT_BOOT_8042 | FADT_BOOT_VGA_NOT_PRESENT);
    w32(t + 112, FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_FIX_RTC |
                     FADT_F_RTC_S4 | FADT_F_TMR_VAL_EXT | FADT_F_RESET_REG_SUP);
    acpi_gas(t + 116, GAS_SPACE_IO, 8, GAS_ACCESS_BYTE, PORT_RESET_CONTROL);
    w8(t + 128, RESET_VALUE);
    w8(t + 131, FADT_MINOR);
    w64(t + 132, acpi_addr(o, facs));
    w64(t + 140, acpi_addr(o, dsdt));
    acpi_gas(t + 148, GAS_SPACE_IO, 32, GAS_ACCESS_WORD, PORT_ACPI_PM1_EVT);
    acpi_gas(t + 172, GAS_SPACE_IO, 16, GAS_ACCESS_WORD, PORT_ACPI_PM1_CNT);
    acpi_gas(t + 208, GAS_SPACE_IO, 32, GAS_ACCESS_DWORD, PORT_ACPI_PM_TMR);
    acpi_gas(t + 220, GAS_SPACE_IO, 32, GAS_ACCESS_BYTE, PORT_ACPI_GPE0);
    memcpy(t + 268, "VMKIT\0\0\0", 8); /* hypervisor vendor identity */
    acpi_checksum(t);
    return off;
}

/* An IOAPIC ID no vCPU uses, so ID-based lookups can never confuse the two. */
static uint8_t ioapic_id(const struct acpi_config *cfg)
{
    for (unsigned id = 0; id < 255; id++) {
        bool used = false;
        for (unsigned i = 0; i < cfg->ncpus && !used; i++)
            used = cfg->apic_ids[i] == id;
        if (!used)
            return (uint8_t)id;
    }
    return 0;
}

/* The legacy entry holds 8-bit APIC IDs and UIDs (UID 0xFF means "all" in NMI entries). */
static bool cpu_needs_x2apic(const struct acpi_config *cfg, unsigned i)
{
    return cfg->apic_ids[i] >= 0xFF || i >= 0xFF;
}

static ssize_t build_madt(struct acpi_out *o, const struct acpi_config *cfg)
{
    size_t len = ACPI_HDR_LEN + 8;
    bool any_x2apic = false;
    for (unsigned i = 0; i < cfg->ncpus; i++) {
        bool x2 = cpu_needs_x2apic(cfg, i);
        any_x2apic |= x2;
        len += x2 ? 16 : 8;
    }
    len += 12 + 2 * 10 + 6 + (any_x2apic ? 12 : 0);

    ssize_t off = acpi_alloc(o, len, 8);
    if (off < 0)
        return off;
    uint8_t *t = o->p + off;
    acpi_header(t, "APIC", (uint32_t)len, 5);
    w32(t + 36, (uint32_t)LAYOUT_LAPIC);
    w32(t + 40, MADT_PCAT_COMPAT);
    uint8_t *e = t + 44;

    for (unsigned i = 0; i < cfg->ncpus; i++) {
        if (cpu_needs_x2apic(cfg, i)) {
            w8(e, MADT_LOCAL_X2APIC);
            w8(e + 1, 16);
            w32(e + 4, cfg->apic_ids[i]);
            w32(e + 8, MADT_LAPIC_ENABLED);
            w32(e + 12, i);
            e += 16;
        } else {
            w8(e, MADT_LOCAL_APIC);
            w8(e + 1, 8);
            w8(e + 2, (uint8_t)i);
            w8(e + 3, (uint8_t)cfg->apic_ids[i]);
            w32(e + 4, MADT_LAPIC_ENABLED);
            e += 8;
        }
    }

    w8(e, MADT_IOAPIC);
    w8(e + 1, 12);
    w8(e + 2, ioapic_id(cfg));
    w32(e + 4, (uint32_t)LAYOUT_IOAPIC);
    w32(e + 8, 0); /* GSI base */
    e += 12;

    /* The PIT's IRQ0 is wired to IOAPIC pin 2 on PC hardware. */
    w8(e, MADT_INT_SRC_OVERRIDE);
    w8(e + 1, 10);
    w8(e + 2, 0); /* ISA */
    w8(e + 3, 0);
    w32(e + 4, 2);
    w16(e + 8, MPS_POLARITY_HIGH | MPS_TRIGGER_EDGE);
    e += 10;

    /* The SCI is level-triggered, active high (an ISA IRQ would default to edge). */
    w8(e, MADT_INT_SRC_OVERRIDE);
    w8(e + 1, 10);
    w8(e + 2, 0);
    w8(e + 3, IRQ_ACPI_SCI);
    w32(e + 4, IRQ_ACPI_SCI);
    w16(e + 8, MPS_POLARITY_HIGH | MPS_TRIGGER_LEVEL);
    e += 10;

    w8(e, MADT_LOCAL_APIC_NMI);
    w8(e + 1, 6);
    w8(e + 2, 0xFF); /* all processors */
    w16(e + 3, 0);   /* conforms to the bus: edge, active high */
    w8(e + 5, 1);    /* LINT1 */
    e += 6;

    if (any_x2apic) {
        w8(e, MADT_LOCAL_X2APIC_NMI);
        w8(e + 1, 12);
        w16(e + 2, 0);
        w32(e + 4, 0xFFFFFFFF);
        w8(e + 8, 1);
        e += 12;
    }

    acpi_checksum(t);
    return off;
}

static ssize_t build_mcfg(struct acpi_out *o)
{
    size_t len = ACPI_HDR_LEN + 8 + 16;
    ssize_t off = acpi_alloc(o, len, 8);
    if (off < 0)
        return off;
    uint8_t *t = o->p + off;
    acpi_header(t, "MCFG", (uint32_t)len, 1);
    uint8_t *e = t + ACPI_HDR_LEN + 8;
    w64(e, LAYOUT_ECAM);
    w16(e + 8, 0); /* segment */
    w8(e + 10, 0); /* first bus */
    w8(e + 11, (uint8_t)(LAYOUT_ECAM_SIZE / MiB - 1));
    acpi_checksum(t);
    return off;
}

static ssize_t build_xsdt(struct acpi_out *o, const size_t *tables, unsigned n)
{
    size_t len = ACPI_HDR_LEN + 8 * (size_t)n;
    ssize_t off = acpi_alloc(o, len, 8);
    if (off < 0)
        return off;
    uint8_t *t = o->p + off;
    acpi_header(t, "XSDT", (uint32_t)len, 1);
    for (unsigned i = 0; i < n; i++)
        w64(t + ACPI_HDR_LEN + 8 * i, acpi_addr(o, tables[i]));
    acpi_checksum(t);
    return off;
}

static void build_rsdp(struct acpi_out *o, size_t xsdt)
{
    uint8_t *t = o->p;
    memcpy(t, "RSD PTR ", 8);
    memcpy(t + 9, ACPI_OEM_ID, 6);
    w8(t + 15, 2);  /* revision: ACPI 2.0+ */
    w32(t + 16, 0); /* no RSDT: every OS that matters reads the XSDT */
    w32(t + 20, 36);
    w64(t + 24, acpi_addr(o, xsdt));
    t[8] = (uint8_t)(0 - acpi_sum(t, 20));
    t[32] = (uint8_t)(0 - acpi_sum(t, 36));
}

static int acpi_check_config(const struct acpi_config *cfg)
{
    if (!cfg->ncpus || cfg->ncpus > ACPI_MAX_CPUS || !cfg->apic_ids)
        return -EINVAL;
    for (unsigned i = 0; i < cfg->ncpus; i++) {
        if (cfg->apic_ids[i] == UINT32_MAX)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (cfg->apic_ids[i] == cfg->apic_ids[j])
                return -EINVAL;
    }
    if (cfg->pci_mmio32_size && (cfg->pci_mmio32_base == 0 || cfg->pci_mmio32_base > UINT32_MAX ||
                                 cfg->pci_mmio32_size - 1 > UINT32_MAX - cfg->pci_mmio32_base))
        return -EINVAL;
    if (cfg->pci_mmio64_size && cfg->pci_mmio64_size - 1 > UINT64_MAX - cfg->pci_mmio64_base)
        return -EINVAL;
    /* The I/O window must sit above the ranges the root bridge already describes (0-0xCFF). */
    if (cfg->pci_io_end < cfg->pci_io_base || cfg->pci_io_base <= PORT_PCI_CONFIG_DATA + 3)
        return -EINVAL;
    return 0;
}

int acpi_build_tables(const struct acpi_config *cfg, void *buf, size_t len, uint64_t gpa)
{
    int r = acpi_check_config(cfg);
    if (r < 0)
        return r;
    if (gpa + len < gpa)
        return -EINVAL;
    len = MIN(len, (size_t)INT_MAX); /* the result is an int */
    struct acpi_out o = {.p = buf, .len = len, .gpa = gpa};

    /* The RSDP goes at offset 0 whatever gpa's alignment: legacy scans look at 16-byte
     * boundaries, so the caller places buf on one. */
    if (len < 36)
        return -ENOSPC;
    memset(o.p, 0, 36);
    o.used = 36;

    ssize_t dsdt = build_dsdt(&o, cfg);
    if (dsdt < 0)
        return (int)dsdt;
    ssize_t facs = build_facs(&o);
    if (facs < 0)
        return (int)facs;
    ssize_t fadt = build_fadt(&o, (size_t)facs, (size_t)dsdt);
    if (fadt < 0)
        return (int)fadt;
    ssize_t madt = build_madt(&o, cfg);
    if (madt < 0)
        return (int)madt;
    ssize_t mcfg = build_mcfg(&o);
    if (mcfg < 0)
        return (int)mcfg;
    size_t tables[] = {(size_t)fadt, (size_t)madt, (size_t)mcfg};
    ssize_t xsdt = build_xsdt(&o, tables, ARRAY_SIZE(tables));
    if (xsdt < 0)
        return (int)xsdt;
    build_rsdp(&o, (size_t)xsdt);
    return (int)o.used;
}
