/* Finds and validates the ACPI tables and pulls out what the guests need (FADT, MADT, MCFG, \_S5). */
#include "rt.h"

struct acpi_info acpi;
static bool acpi_done;
static int acpi_result;

#define LOW_LIMIT 0x100000000UL
#define TABLE_MAX_LEN (1u << 20)

static uint32_t rd32(const void *base, size_t off) { return *(const uint32_t *)((const uint8_t *)base + off); }
static uint64_t rd64(const void *base, size_t off) { return *(const uint64_t *)((const uint8_t *)base + off); }

bool acpi_checksum_ok(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + b[i]);
    return sum == 0;
}

static int fail(const char *fmt, uint64_t a, uint64_t b)
{
    if (!acpi.error[0])
        rt_snprintf(acpi.error, sizeof(acpi.error), fmt, a, b);
    return -1;
}

static const struct acpi_rsdp *rsdp_at(uint64_t pa)
{
    if (pa < 0x1000 || pa + sizeof(struct acpi_rsdp) > LOW_LIMIT)
        return NULL;
    const struct acpi_rsdp *r = (const void *)pa;
    if (memcmp(r->sig, "RSD PTR ", 8) || !acpi_checksum_ok(r, 20))
        return NULL;
    return r;
}

static const struct acpi_rsdp *rsdp_find(void)
{
    if (rt_boot.rsdp)
        return rsdp_at(rt_boot.rsdp);
    for (uint64_t pa = 0xE0000; pa < 0x100000; pa += 16)
        if (rsdp_at(pa))
            return rsdp_at(pa);
    return NULL;
}

/* A table is usable when it lies in mapped memory, its length is sane and it sums to zero. */
static const struct acpi_header *table_at(uint64_t pa)
{
    if (!pa || pa + sizeof(struct acpi_header) > LOW_LIMIT) {
        fail("table address %lx is out of range", pa, 0);
        return NULL;
    }
    const struct acpi_header *h = (const void *)pa;
    if (h->length < sizeof(*h) || h->length > TABLE_MAX_LEN || pa + h->length > LOW_LIMIT) {
        fail("table at %lx has bad length %lu", pa, h->length);
        return NULL;
    }
    if (!acpi_checksum_ok(h, h->length)) {
        fail("table at %lx (signature %lx, little-endian) has a bad checksum", pa, rd32(h, 0));
        return NULL;
    }
    return h;
}

static void add_table(const struct acpi_header *h)
{
    if (acpi.ntables < ACPI_MAX_TABLES)
        acpi.tables[acpi.ntables++] = h;
}

const struct acpi_header *acpi_find(const char *sig)
{
    for (unsigned i = 0; i < acpi.ntables; i++)
        if (!memcmp(acpi.tables[i]->sig, sig, 4))
            return acpi.tables[i];
    return NULL;
}


int acpi_find_s5(const uint8_t *aml, size_t len)
{
    for (size_t i = 1; i + 8 <= len; i++) {
        if (memcmp(aml + i, "_S5_", 4))
            continue;
        /* NameOp, optionally with a root prefix, then PackageOp */
        if (!(aml[i - 1] == 0x08 || (aml[i - 1] == '\\' && i >= 2 && aml[i - 2] == 0x08)))
            continue;
        size_t p = i + 4;
        if (aml[p++] != 0x12)
            continue;
        p += 1 + (aml[p] >> 6); /* PkgLength: lead byte + up to 3 more */
        p++;                    /* NumElements */
        if (p + 5 > len)
            return -1;
        switch (aml[p]) {
        case 0x00: return 0;
        case 0x01: return 1;
        case 0x0A: return aml[p + 1];
        case 0x0B: return aml[p + 1] | aml[p + 2] << 8;
        case 0x0C: return (int)(rd32(aml, p + 1) & 0x7fffffff);
        default: return -1;
        }
    }
    return -1;
}

static void parse_fadt(const struct acpi_header *f)
{
    uint32_t len = f->length;
    acpi.fadt = f;
    acpi.pm1a_evt = rd32(f, 56);
    acpi.pm1a_cnt = len >= 68 ? rd32(f, 64) : 0;
    acpi.pm_tmr = len >= 80 ? rd32(f, 76) : 0;
    if (len >= 129) {
        memcpy(&acpi.reset_reg, (const uint8_t *)f + 116, sizeof(acpi.reset_reg));
        acpi.reset_value = ((const uint8_t *)f)[128];
        acpi.reset_valid = (rd32(f, 112) & (1u << 10)) && acpi.reset_reg.address;
    }
    /* The 64-bit blocks win when present (ACPI 2.0+). */
    if (len >= 184) {
        const struct acpi_gas *g = (const void *)((const uint8_t *)f + 172);
        if (g->space == 1 && g->address && g->address <= 0xFFFF)
            acpi.pm1a_cnt = (uint32_t)g->address;
    }
    if (len >= 220) {
        const struct acpi_gas *g = (const void *)((const uint8_t *)f + 208);
        if (g->space == 1 && g->address && g->address <= 0xFFFF)
            acpi.pm_tmr = (uint32_t)g->address;
    }
    uint64_t dsdt = len >= 148 ? rd64(f, 140) : 0;
    if (!dsdt && len >= 48)
        dsdt = rd32(f, 40);
    const struct acpi_header *d = table_at(dsdt);
    if (d && !memcmp(d->sig, "DSDT", 4)) {
        acpi.dsdt = d;
        add_table(d);
        acpi.s5_slp_typ = acpi_find_s5((const uint8_t *)d + sizeof(*d), d->length - sizeof(*d));
    }
    uint64_t facs = len >= 140 ? rd64(f, 132) : 0;
    if (!facs)
        facs = rd32(f, 36);
    /* FACS has no checksum; just list it when it looks right. */
    if (facs && facs + 64 <= LOW_LIMIT && !memcmp((const void *)facs, "FACS", 4))
        add_table((const void *)facs);
}

static void parse_madt(const struct acpi_header *m)
{
    acpi.madt = m;
    if (m->length < 44)
        return;
    acpi.lapic_addr = rd32(m, 36);
    const uint8_t *p = (const uint8_t *)m + 44, *end = (const uint8_t *)m + m->length;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        switch (p[0]) {
        case 0: /* processor local APIC */
            if (p[1] >= 8 && (rd32(p, 4) & 1) && acpi.ncpus < RT_ARRAY_SIZE(acpi.apic_ids))
                acpi.apic_ids[acpi.ncpus++] = p[3];
            break;
        case 1:
            acpi.nioapics++;
            break;
        case 5: /* local APIC address override */
            if (p[1] >= 12)
                acpi.lapic_addr = rd64(p, 4);
            break;
        }
        p += p[1];
    }
}

static void parse_mcfg(const struct acpi_header *m)
{
    acpi.mcfg = m;
    for (uint32_t off = 44; off + 16 <= m->length; off += 16) {
        const uint8_t *e = (const uint8_t *)m + off;
        if (*(const uint16_t *)(e + 8) != 0)
            continue;
        acpi.ecam_base = rd64(e, 0);
        acpi.ecam_bus_start = e[10];
        acpi.ecam_bus_end = e[11];
        acpi.ecam_valid = acpi.ecam_base && acpi.ecam_base < LOW_LIMIT && e[10] <= e[11];
        break;
    }
}

int acpi_init(void)
{
    if (acpi_done)
        return acpi_result;
    acpi_done = true;
    acpi.s5_slp_typ = -1;
    acpi_result = -1;
    const struct acpi_rsdp *r = rsdp_find();
    if (!r)
        return fail(rt_boot.rsdp ? "no valid RSDP at %lx" : "no RSDP found (loader gave %lx)", rt_boot.rsdp, 0);
    acpi.rsdp = r;
    bool xsdt = false;
    uint64_t root = r->rsdt;
    if (r->revision >= 2) {
        if (r->length < sizeof(*r) || r->length > 4096 || !acpi_checksum_ok(r, r->length))
            return fail("RSDP extended checksum or length (%lu) is bad", r->length, 0);
        if (r->xsdt) {
            root = r->xsdt;
            xsdt = true;
        }
    }
    const struct acpi_header *rt = table_at(root);
    if (!rt)
        return -1;
    if (memcmp(rt->sig, xsdt ? "XSDT" : "RSDT", 4))
        return fail("root table at %lx has the wrong signature", root, 0);
    add_table(rt);
    size_t esz = xsdt ? 8 : 4;
    int bad = 0;
    for (size_t off = sizeof(*rt); off + esz <= rt->length; off += esz) {
        uint64_t pa = xsdt ? rd64(rt, off) : rd32(rt, off);
        const struct acpi_header *h = table_at(pa);
        if (!h) {
            bad = -1;
            continue;
        }
        add_table(h);
        if (!memcmp(h->sig, "FACP", 4))
            parse_fadt(h);
        else if (!memcmp(h->sig, "APIC", 4))
            parse_madt(h);
        else if (!memcmp(h->sig, "MCFG", 4))
            parse_mcfg(h);
    }
    if (!acpi.fadt)
        return fail("no FADT", 0, 0);
    acpi_result = bad;
    return bad;
}

uint32_t acpi_pm_timer_read(void)
{
    return acpi.pm_tmr ? inl((uint16_t)acpi.pm_tmr) : 0;
}

void rt_delay_ms(unsigned ms)
{
    if (acpi_init() >= 0 && acpi.pm_tmr) {
        uint32_t start = acpi_pm_timer_read(), limit = 3580u * ms;
        while (((acpi_pm_timer_read() - start) & 0xffffff) < limit)
            cpu_relax();
        return;
    }
    for (uint32_t i = 0; i < ms * 1000u; i++)
        cpu_relax();
}
