/* A small AML (ACPI Machine Language) encoder: enough to emit vmkit's DSDT (ACPI 6.x, ch. 20). */
#include "machine/aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

enum {
    ZERO_OP = 0x00,
    ONE_OP = 0x01,
    NAME_OP = 0x08,
    BYTE_PREFIX = 0x0A,
    WORD_PREFIX = 0x0B,
    DWORD_PREFIX = 0x0C,
    STRING_PREFIX = 0x0D,
    QWORD_PREFIX = 0x0E,
    SCOPE_OP = 0x10,
    BUFFER_OP = 0x11,
    PACKAGE_OP = 0x12,
    METHOD_OP = 0x14,
    DUAL_NAME_PREFIX = 0x2E,
    MULTI_NAME_PREFIX = 0x2F,
    EXT_OP_PREFIX = 0x5B,
    DEVICE_OP = 0x82, /* after EXT_OP_PREFIX */
    ROOT_CHAR = 0x5C,
    PARENT_PREFIX = 0x5E,
    RETURN_OP = 0xA4,
};

/* Largest PkgLength value the 4-byte form can carry (28 bits). */
#define PKGLEN_MAX 0x0FFFFFFFu

void aml_init(struct aml *a)
{
    memset(a, 0, sizeof(*a));
}

void aml_release(struct aml *a)
{
    free(a->data);
    memset(a, 0, sizeof(*a));
}

int aml_finish(struct aml *a)
{
    if (a->err)
        return a->err;
    return a->depth ? -EINVAL : 0;
}

static void aml_fail(struct aml *a, int err)
{
    if (!a->err)
        a->err = err;
}

static bool aml_reserve(struct aml *a, size_t n)
{
    if (a->err)
        return false;
    /* An AML table length is a 32-bit field; refusing earlier also keeps sizes from overflowing. */
    if (n > PKGLEN_MAX || a->len > PKGLEN_MAX - n) {
        aml_fail(a, -E2BIG);
        return false;
    }
    if (a->len + n > a->cap) {
        size_t cap = MAX(a->cap * 2, (size_t)256);
        while (cap < a->len + n)
            cap *= 2;
        a->data = xrealloc(a->data, cap);
        a->cap = cap;
    }
    return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
    if (!aml_reserve(a, n))
        return;
    memcpy(a->data + a->len, p, n);
    a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int aml_pkglen_encode(size_t body_len, uint8_t out[4])
{
    /* The encoded length counts the PkgLength bytes themselves, so the form depends on it. */
    static const uint32_t limit[4] = {0x3F, 0xFFF, 0xFFFFF, PKGLEN_MAX};
    for (unsigned k = 1; k <= 4; k++) {
        if (body_len > limit[k - 1] - k)
            continue;
        uint32_t total = (uint32_t)(body_len + k);
        if (k == 1) {
            out[0] = (uint8_t)total;
            return 1;
        }
        out[0] = (uint8_t)(((k - 1) << 6) | (total & 0xF));
        for (unsigned i = 1; i < k; i++)
            out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
        return (int)k;
    }
    return -EINVAL;
}

static bool seg_char_ok(char c, bool first)
{
    if (c == '_' || (c >= 'A' && c <= 'Z'))
        return true;
    return !first && c >= '0' && c <= '9';
}

int aml_namestring_encode(const char *path, uint8_t *out, size_t cap)
{
    size_t n = 0;
    const char *p = path;

#define PUT(b)                                                                                     \
    do {                                                                                           \
        if (n >= cap)                                                                              \
            return -ENOSPC;                                                                        \
        out[n++] = (uint8_t)(b);                                                                   \
    } while (0)

    if (*p == '\\') {
        PUT(ROOT_CHAR);
        p++;
    } else {
        while (*p == '^') {
            PUT(PARENT_PREFIX);
            p++;
        }
    }

    unsigned nsegs = 0;
    if (*p) {
        nsegs = 1;
        for (const char *q = p; *q; q++)
            nsegs += *q == '.';
    }
    if (nsegs == 0) {
        PUT(ZERO_OP); /* NullName */
        return (int)n;
    }
    if (nsegs > 255)
        return -EINVAL;
    if (nsegs == 2) {
        PUT(DUAL_NAME_PREFIX);
    } else if (nsegs > 2) {
        PUT(MULTI_NAME_PREFIX);
        PUT(nsegs);
    }
    for (unsigned s = 0; s < nsegs; s++) {
        unsigned i = 0;
        for (; *p && *p != '.'; p++, i++) {
            if (i >= 4 || !seg_char_ok(*p, i == 0))
                return -EINVAL;
            PUT(*p);
        }
        if (i == 0)
            return -EINVAL; /* empty segment: "A..B", "A." */
        for (; i < 4; i++)
            PUT('_');
        if (*p == '.')
            p++;
    }
#undef PUT
    return (int)n;
}

void aml_namestring(struct aml *a, const char *path)
{
    /* Root or up to 64 parent prefixes, MultiNamePrefix + count, 255 segments. */
    uint8_t tmp[64 + 2 + 255 * 4];
    int n = aml_namestring_encode(path, tmp, sizeof(tmp));
    if (n < 0) {
        aml_fail(a, n);
        return;
    }
    aml_bytes(a, tmp, (size_t)n);
}

/* Integer as the shortest ComputationalData form; returns the byte count (at most 9). */
static unsigned integer_encode(uint64_t v, uint8_t out[9])
{
    if (v == 0 || v == 1) {
        out[0] = v ? ONE_OP : ZERO_OP;
        return 1;
    }
    unsigned size;
    if (v <= 0xFF) {
        out[0] = BYTE_PREFIX;
        size = 1;
    } else if (v <= 0xFFFF) {
        out[0] = WORD_PREFIX;
        size = 2;
    } else if (v <= 0xFFFFFFFF) {
        out[0] = DWORD_PREFIX;
        size = 4;
    } else {
        out[0] = QWORD_PREFIX;
        size = 8;
    }
    put_le(out + 1, v, size);
    return 1 + size;
}

void aml_integer(struct aml *a, uint64_t v)
{
    uint8_t tmp[9];
    aml_bytes(a, tmp, integer_encode(v, tmp));
}

void aml_string(struct aml *a, const char *s)
{
    /* AML strings are 7-bit ASCII without embedded NULs. */
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p > 0x7F) {
            aml_fail(a, -EINVAL);
            return;
        }
    }
    aml_byte(a, STRING_PREFIX);
    aml_bytes(a, s, strlen(s) + 1);
}

uint32_t aml_eisaid(const char *id)
{
    if (strlen(id) != 7)
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            return 0;
        v = (v << 5) | (uint32_t)(id[i] - 0x40);
    }
    for (int i = 3; i < 7; i++) {
        char c = id[i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return 0;
        v = (v << 4) | d;
    }
    /* The 32-bit value is defined big-endian; AML stores integers little-endian. */
    return __builtin_bswap32(v);
}

void aml_eisaid_integer(struct aml *a, const char *id)
{
    uint32_t v = aml_eisaid(id);
    if (!v) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_integer(a, v);
}

void aml_name_decl(struct aml *a, const char *path)
{
    aml_byte(a, NAME_OP);
    aml_namestring(a, path);
}

void aml_return(struct aml *a)
{
    aml_byte(a, RETURN_OP);
}

static void aml_open(struct aml *a, enum aml_kind kind)
{
    if (a->err)
        return;
    if (a->depth >= AML_MAX_DEPTH) {
        aml_fail(a, -EINVAL);
        return;
    }
    a->open[a->depth].kind = kind;
    a->open[a->depth].start = a->len;
    a->depth++;
}

void aml_scope_begin(struct aml *a, const char *path)
{
    aml_byte(a, SCOPE_OP);
    aml_open(a, AML_SCOPE);
    aml_namestring(a, path);
}

void aml_device_begin(struct aml *a, const char *path)
{
    aml_byte(a, EXT_OP_PREFIX);
    aml_byte(a, DEVICE_OP);
    aml_open(a, AML_DEVICE);
    aml_namestring(a, path);
}

void aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
    if (nargs > 7) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_byte(a, METHOD_OP);
    aml_open(a, AML_METHOD);
    aml_namestring(a, path);
    aml_byte(a, (uint8_t)(nargs | (serialized ? 0x08 : 0)));
}

void aml_package_begin(struct aml *a, unsigned nelems)
{
    /* More than 255 elements needs VarPackageOp, which vmkit has no use for. */
    if (nelems > 255) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_byte(a, PACKAGE_OP);
    aml_open(a, AML_PACKAGE);
    aml_byte(a, (uint8_t)nelems);
}

void aml_buffer_begin(struct aml *a)
{
    aml_byte(a, BUFFER_OP);
    aml_open(a, AML_BUFFER);
}

void aml_end(struct aml *a)
{
    if (a->err)
        return;
    if (a->depth == 0) {
        aml_fail(a, -EINVAL);
        return;
    }
    a->depth--;
    size_t start = a->open[a->depth].start;
    size_t body = a->len - start;
    uint8_t hdr[4 + 9];
    uint8_t size_enc[9];
    unsigned nsize = 0;

    if (a->open[a->depth].kind == AML_BUFFER) {
        nsize = integer_encode(body, size_enc);
        body += nsize;
    }
    int np = aml_pkglen_encode(body, hdr);
    if (np < 0) {
        aml_fail(a, -E2BIG);
        return;
    }
    memcpy(hdr + np, size_enc, nsize);
    size_t nhdr = (size_t)np + nsize;
    if (!aml_reserve(a, nhdr))
        return;
    memmove(a->data + start + nhdr, a->data + start, a->len - start);
    memcpy(a->data + start, hdr, nhdr);
    a->len += nhdr;
}

/* --- Resource descriptors (ACPI 6.x, 6.4) --- */

void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
    uint8_t d[8] = {0x47, 0x01 /* Decode16 */};
    put_le(d + 2, min, 2);
    put_le(d + 4, max, 2);
    d[6] = align;
    d[7] = len;
    aml_bytes(a, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
    if (irq > 15) {
        aml_fail(a, -EINVAL);
        return;
    }
    uint8_t d[3] = {0x22};
    put_le(d + 1, 1u << irq, 2);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_interrupt(struct aml *a, bool consumer, bool edge, bool active_low, bool shared,
                       uint32_t gsi)
{
    uint8_t d[9] = {0x89, 6, 0};
    d[3] = (uint8_t)((consumer ? 1 : 0) | (edge ? 2 : 0) | (active_low ? 4 : 0) | (shared ? 8 : 0));
    d[4] = 1; /* one interrupt in the table */
    put_le(d + 5, gsi, 4);
    aml_bytes(a, d, sizeof(d));
}

/* General flags: producer (bit 0 clear), positive decode, MinFixed (bit 2), MaxFixed (bit 3). */
#define ADDR_GFLAGS_PRODUCER_FIXED 0x0C

static void aml_res_word(struct aml *a, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
    if (max < min) {
        aml_fail(a, -EINVAL);
        return;
    }
    uint8_t d[16] = {0x88, 13, 0, type, ADDR_GFLAGS_PRODUCER_FIXED, tflags};
    put_le(d + 6, 0, 2); /* granularity */
    put_le(d + 8, min, 2);
    put_le(d + 10, max, 2);
    put_le(d + 12, 0, 2); /* translation */
    put_le(d + 14, (uint32_t)max - min + 1, 2);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max)
{
    aml_res_word(a, 2, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
    /* Length 0x10000 does not fit the 16-bit field; a bridge never owns all of port space. */
    if (min == 0 && max == 0xFFFF) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_res_word(a, 1, 3 /* EntireRange */, min, max);
}

static uint8_t mem_tflags(enum aml_mem_cache cache)
{
    return (uint8_t)(0x01 /* ReadWrite */ | ((cache & 3) << 1));
}

void aml_res_dword_memory(struct aml *a, enum aml_mem_cache cache, uint32_t min, uint32_t max)
{
    if (max < min || (min == 0 && max == 0xFFFFFFFF)) {
        aml_fail(a, -EINVAL);
        return;
    }
    uint8_t d[26] = {0x87, 23, 0, 0 /* memory */, ADDR_GFLAGS_PRODUCER_FIXED, mem_tflags(cache)};
    put_le(d + 6, 0, 4);
    put_le(d + 10, min, 4);
    put_le(d + 14, max, 4);
    put_le(d + 18, 0, 4);
    put_le(d + 22, (uint64_t)max - min + 1, 4);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_qword_memory(struct aml *a, enum aml_mem_cache cache, uint64_t min, uint64_t max)
{
    if (max < min || (min == 0 && max == UINT64_MAX)) {
        aml_fail(a, -EINVAL);
        return;
    }
    uint8_t d[46] = {0x8A, 43, 0, 0 /* memory */, ADDR_GFLAGS_PRODUCER_FIXED, mem_tflags(cache)};
    put_le(d + 6, 0, 8);
    put_le(d + 14, min, 8);
    put_le(d + 22, max, 8);
    put_le(d + 30, 0, 8);
    put_le(d + 38, max - min + 1, 8);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t len)
{
    uint8_t d[12] = {0x86, 9, 0, writable ? 1 : 0};
    put_le(d + 4, base, 4);
    put_le(d + 8, len, 4);
    aml_bytes(a, d, sizeof(d));
}

void aml_res_end(struct aml *a)
{
    static const uint8_t d[2] = {0x79, 0x00};
    aml_bytes(a, d, sizeof(d));
}
