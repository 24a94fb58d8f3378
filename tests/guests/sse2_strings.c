/* SSE2 guest: glibc-style memcpy/memset/strlen/memchr/memcmp checked against byte loops over many
 * sizes and alignments (including strings ending just before an unmapped page), fxsave/fxrstor
 * and MXCSR. */
#include "rt/rt.h"
#include "rt/trap.h"
#include "sse2_impl.h"

const char guest_name[] = "sse2_strings";

static uint8_t src[1024] __attribute__((aligned(64)));
static uint8_t dst[1024] __attribute__((aligned(64)));
static uint8_t ref[1024] __attribute__((aligned(64)));
static uint8_t fx[2][512] __attribute__((aligned(16)));
static uint32_t rng = 12345;

static uint8_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return (uint8_t)(rng >> 16);
}

static void enable_sse(void)
{
    uint64_t cr0, cr4;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    cr0 = (cr0 & ~(1ull << 2)) | (1ull << 1); /* EM off, MP on */
    __asm__ volatile("mov %0, %%cr0" ::"r"(cr0));
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    cr4 |= (1ull << 9) | (1ull << 10); /* OSFXSR, OSXMMEXCPT */
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4));
}

static void check_copy_set(unsigned sa, unsigned da, unsigned n)
{
    for (unsigned i = 0; i < sizeof(src); i++) {
        src[i] = rnd();
        dst[i] = ref[i] = (uint8_t)~src[i];
    }
    for (unsigned i = 0; i < n; i++)
        ref[da + i] = src[sa + i];
    CHECK(sse2_memcpy(dst + da, src + sa, n) == dst + da, "memcpy return value");
    for (unsigned i = 0; i < sizeof(dst); i++)
        CHECK(dst[i] == ref[i], "memcpy src+%u dst+%u n=%u: byte %u is %02x, want %02x", sa, da, n, i,
              dst[i], ref[i]);
    uint8_t c = rnd();
    for (unsigned i = 0; i < n; i++)
        ref[da + i] = c;
    CHECK(sse2_memset(dst + da, c, n) == dst + da, "memset return value");
    for (unsigned i = 0; i < sizeof(dst); i++)
        CHECK(dst[i] == ref[i], "memset dst+%u n=%u c=%02x: byte %u is %02x, want %02x", da, n, c, i,
              dst[i], ref[i]);
}

static void check_search(unsigned a, unsigned n)
{
    /* A string of n non-zero bytes at src+a, then NUL; a marker byte somewhere for memchr. */
    for (unsigned i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(1 + rnd() % 200);
    src[a + n] = 0;
    if (a > 0)
        src[a - 1] = 0; /* a NUL before the start must be ignored */
    size_t len = sse2_strlen((const char *)src + a);
    CHECK(len == n, "strlen at +%u: %zu, want %u", a, len, n);
    unsigned pos = n ? rnd() % n : 0;
    uint8_t *hay = src + a;
    hay[pos] = 0xEE;
    if (a > 0)
        src[a - 1] = 0xEE;
    void *want = NULL;
    for (unsigned i = 0; i < n; i++)
        if (hay[i] == 0xEE) {
            want = hay + i;
            break;
        }
    void *got = sse2_memchr(hay, 0xEE, n);
    CHECK(got == want, "memchr at +%u n=%u: %p, want %p", a, n, got, want);
    /* A match just past n must not be reported (the bytes are 1..200, 0xEE or 0). */
    hay[n] = 0xEF;
    CHECK(sse2_memchr(hay, 0xEF, n) == NULL, "memchr at +%u n=%u found a byte past the end", a, n);
    CHECK(sse2_memchr(hay, 0xEF, n + 1) == hay + n, "memchr at +%u n=%u missed the last byte", a, n + 1);

    /* memcmp: equal, then one differing byte, sign as the byte loop says. */
    sse2_memcpy(dst + (a ^ 5), hay, n);
    CHECK(sse2_memcmp(dst + (a ^ 5), hay, n) == 0, "memcmp equal at +%u n=%u", a, n);
    if (n) {
        unsigned d = rnd() % n;
        dst[(a ^ 5) + d] = (uint8_t)(hay[d] + 1 + rnd() % 50);
        int r = sse2_memcmp(dst + (a ^ 5), hay, n);
        int w = (int)dst[(a ^ 5) + d] - (int)hay[d];
        CHECK((r > 0) == (w > 0) && r != 0, "memcmp at +%u n=%u diff at %u: %d, want sign of %d", a, n,
              d, r, w);
    }
}

/* Strings that end right before an unmapped page: aligned loads must not touch it. */
static void check_page_edge(void)
{
    volatile uint64_t *pte0 = trap_test_pte(0), *pte1 = trap_test_pte(1);
    *pte0 = trap_frame_page(0) | 3;
    *pte1 = 0;
    invlpg(TEST_VA);
    invlpg(TEST_VA + 4096);
    uint8_t *page = (uint8_t *)(uintptr_t)TEST_VA;
    for (unsigned n = 0; n < 64; n++) {
        for (unsigned i = 0; i < 4096; i++)
            page[i] = (uint8_t)(1 + i % 250);
        page[4095] = 0;
        const char *s = (const char *)page + 4095 - n;
        CHECK(sse2_strlen(s) == n, "strlen of %u bytes ending at a page edge", n);
        page[4095] = 0xAA;
        CHECK(sse2_memchr(page + 4096 - n, 0xAA, n) == (n ? page + 4095 : NULL),
              "memchr of %u bytes ending at a page edge", n);
    }
}

void guest_main(void)
{
    trap_init(); /* a stray #UD or #PF names itself instead of triple-faulting */
    enable_sse();
    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    CHECK(cr4 & (1u << 9), "CR4.OSFXSR did not stick");

    unsigned cases = 0;
    static const unsigned sizes[] = {0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100,
                                     127, 128, 129, 255, 256, 300, 511, 700};
    for (unsigned s = 0; s < RT_ARRAY_SIZE(sizes); s++)
        for (unsigned sa = 0; sa < 16; sa += 3)
            for (unsigned da = 0; da < 16; da += 5) {
                check_copy_set(sa, da, sizes[s]);
                cases++;
            }
    for (unsigned s = 0; s < RT_ARRAY_SIZE(sizes); s++)
        for (unsigned a = 0; a < 32; a++) {
            check_search(a + 1, sizes[s]);
            cases++;
        }
    check_page_edge();

    int r = sse2_fxsave_roundtrip(fx[0], fx[1], 0xff80); /* RC toward zero, FZ */
    CHECK(r == 0, "fxsave/fxrstor round trip failed at step %d", -r);
    rt_printf("sse2: %u string cases, page edge, fxsave/fxrstor ok\n", cases);
    test_pass();
}
