/* Test helpers: follow the RSDP -> XSDT -> tables chain inside a buffer built by acpi_build_tables.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct acpi_walk {
    const uint8_t *buf;
    size_t len; /* bytes acpi_build_tables reported as used */
    uint64_t gpa;
};

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static inline uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

/* The table at guest address addr if it lies wholly inside the buffer (len from its header, or
 * fixed_len when nonzero), else NULL. */
static inline const uint8_t *walk_at(const struct acpi_walk *w, uint64_t addr, size_t fixed_len)
{
    if (addr < w->gpa || addr - w->gpa > w->len)
        return NULL;
    size_t off = (size_t)(addr - w->gpa);
    size_t need = fixed_len ? fixed_len : 8;
    if (w->len - off < need)
        return NULL;
    if (!fixed_len) {
        uint32_t tl = rd32(w->buf + off + 4);
        if (tl < 36 || tl > w->len - off)
            return NULL;
    }
    return w->buf + off;
}

static inline const uint8_t *walk_xsdt(const struct acpi_walk *w)
{
    return walk_at(w, rd64(w->buf + 24), 0);
}

/* The XSDT entry with signature sig (FACP, APIC, MCFG), or NULL. */
static inline const uint8_t *walk_find(const struct acpi_walk *w, const char *sig)
{
    const uint8_t *x = walk_xsdt(w);
    if (!x)
        return NULL;
    uint32_t n = (rd32(x + 4) - 36) / 8;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *t = walk_at(w, rd64(x + 36 + 8 * i), 0);
        if (t && !memcmp(t, sig, 4))
            return t;
    }
    return NULL;
}

static inline const uint8_t *walk_dsdt(const struct acpi_walk *w)
{
    const uint8_t *f = walk_find(w, "FACP");
    return f ? walk_at(w, rd64(f + 140), 0) : NULL;
}

static inline const uint8_t *walk_facs(const struct acpi_walk *w)
{
    const uint8_t *f = walk_find(w, "FACP");
    return f ? walk_at(w, rd64(f + 132), 64) : NULL;
}
