/* SSE2 string routines for the sse2_strings guest, in the style of glibc/musl (aligned loads that
 * never cross a page, pcmpeqb + pmovmskb + bsf), and an fxsave/fxrstor round trip. Built with SSE. */
#include <emmintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "sse2_impl.h"

static inline unsigned bsf(unsigned m) { return (unsigned)__builtin_ctz(m); }

void *sse2_memcpy(void *d, const void *s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    if (n >= 16) {
        /* Unaligned head, then aligned stores; the last 16 bytes overlap like glibc's tail. */
        __m128i head = _mm_loadu_si128((const __m128i *)sp);
        __m128i tail = _mm_loadu_si128((const __m128i *)(sp + n - 16));
        size_t skew = 16 - ((uintptr_t)dp & 15);
        _mm_storeu_si128((__m128i *)dp, head);
        for (size_t i = skew; i + 16 <= n; i += 16)
            _mm_store_si128((__m128i *)(dp + i), _mm_loadu_si128((const __m128i *)(sp + i)));
        _mm_storeu_si128((__m128i *)(dp + n - 16), tail);
        return d;
    }
    for (size_t i = 0; i < n; i++)
        dp[i] = sp[i];
    return d;
}

void *sse2_memset(void *d, int c, size_t n)
{
    uint8_t *dp = d;
    __m128i v = _mm_set1_epi8((char)c);
    if (n >= 16) {
        _mm_storeu_si128((__m128i *)dp, v);
        for (size_t i = 16 - ((uintptr_t)dp & 15); i + 16 <= n; i += 16)
            _mm_store_si128((__m128i *)(dp + i), v);
        _mm_storeu_si128((__m128i *)(dp + n - 16), v);
        return d;
    }
    for (size_t i = 0; i < n; i++)
        dp[i] = (uint8_t)c;
    return d;
}

size_t sse2_strlen(const char *s)
{
    /* Aligned loads only: bytes before s in the first block are masked off. */
    const __m128i zero = _mm_setzero_si128();
    uintptr_t a = (uintptr_t)s & ~(uintptr_t)15;
    unsigned off = (unsigned)((uintptr_t)s & 15);
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128((const __m128i *)a), zero));
    m >>= off;
    if (m)
        return bsf(m);
    a += 16;
    if (a & 16) {
        m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128((const __m128i *)a), zero));
        if (m)
            return a - (uintptr_t)s + bsf(m);
        a += 16;
    }
    /* 32 bytes per step: pminub folds both halves so one compare finds any NUL. */
    for (;; a += 32) {
        __m128i x = _mm_load_si128((const __m128i *)a), y = _mm_load_si128((const __m128i *)(a + 16));
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, y), zero))) {
            m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, zero));
            if (m)
                return a - (uintptr_t)s + bsf(m);
            m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(y, zero));
            return a + 16 - (uintptr_t)s + bsf(m);
        }
    }
}

void *sse2_memchr(const void *p, int c, size_t n)
{
    const uint8_t *s = p;
    if (!n)
        return NULL;
    const __m128i v = _mm_set1_epi8((char)c);
    uintptr_t a = (uintptr_t)s & ~(uintptr_t)15;
    unsigned off = (unsigned)((uintptr_t)s & 15);
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128((const __m128i *)a), v)) >> off;
    if (m) {
        size_t i = bsf(m);
        return i < n ? (void *)(s + i) : NULL;
    }
    size_t done = 16 - off;
    a += 16;
    if ((a & 16) && done < n) {
        m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128((const __m128i *)a), v));
        if (m) {
            size_t i = done + bsf(m);
            return i < n ? (void *)(s + i) : NULL;
        }
        done += 16;
        a += 16;
    }
    /* 32-byte aligned pairs: like strlen, no load crosses a page. */
    while (done < n) {
        __m128i x = _mm_load_si128((const __m128i *)a), y = _mm_load_si128((const __m128i *)(a + 16));
        __m128i ex = _mm_cmpeq_epi8(x, v), ey = _mm_cmpeq_epi8(y, v);
        /* por both compares: one movemask decides whether either half matched. */
        if (_mm_movemask_epi8(_mm_or_si128(ex, ey))) {
            m = (unsigned)_mm_movemask_epi8(ex) | (unsigned)_mm_movemask_epi8(ey) << 16;
            size_t i = done + bsf(m);
            return i < n ? (void *)(s + i) : NULL;
        }
        done += 32;
        a += 32;
    }
    return NULL;
}

int sse2_memcmp(const void *pa, const void *pb, size_t n)
{
    const uint8_t *a = pa, *b = pb;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(a + i)), y = _mm_loadu_si128((const __m128i *)(b + i));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y)) ^ 0xffff;
        if (m) {
            unsigned k = bsf(m);
            return (int)a[i + k] - (int)b[i + k];
        }
    }
    for (; i < n; i++)
        if (a[i] != b[i])
            return (int)a[i] - (int)b[i];
    return 0;
}

int sse2_fxsave_roundtrip(uint8_t area[512], uint8_t area2[512], uint32_t mxcsr)
{
    /* Distinct patterns in xmm0..15 and a non-default MXCSR, saved, clobbered, restored. */
    static uint8_t pat[16][16] __attribute__((aligned(16)));
    static uint8_t back[16][16] __attribute__((aligned(16)));
    for (unsigned r = 0; r < 16; r++)
        for (unsigned j = 0; j < 16; j++)
            pat[r][j] = (uint8_t)(r * 17 + j * 3 + 1);
    uint32_t old, got;
    __asm__ volatile("stmxcsr %0" : "=m"(old));
    __asm__ volatile("ldmxcsr %0" ::"m"(mxcsr));
    __asm__ volatile("stmxcsr %0" : "=m"(got));
    if (got != mxcsr)
        return -1;
#define LD(i) "movdqa " #i "*16(%0), %%xmm" #i "\n\t"
#define ST(i) "movdqa %%xmm" #i ", " #i "*16(%1)\n\t"
    __asm__ volatile(LD(0) LD(1) LD(2) LD(3) LD(4) LD(5) LD(6) LD(7) LD(8) LD(9) LD(10) LD(11)
                     LD(12) LD(13) LD(14) LD(15)
                     "fxsave64 (%2)\n\t"
                     "pxor %%xmm0, %%xmm0\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm15, %%xmm15\n\t"
                     "pcmpeqb %%xmm3, %%xmm3\n\t"
                     "ldmxcsr %4\n\t"
                     "fxsave64 (%3)\n\t"
                     "fxrstor64 (%2)\n\t"
                     ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7) ST(8) ST(9) ST(10) ST(11)
                     ST(12) ST(13) ST(14) ST(15)
                     :
                     : "r"(pat), "r"(back), "r"(area), "r"(area2), "m"(old)
                     : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    __asm__ volatile("stmxcsr %0" : "=m"(got));
    __asm__ volatile("ldmxcsr %0" ::"m"(old));
    if (got != mxcsr)
        return -2; /* fxrstor did not restore MXCSR */
    uint32_t saved_mxcsr;
    __builtin_memcpy(&saved_mxcsr, area + 24, 4);
    if (saved_mxcsr != mxcsr)
        return -3;
    __builtin_memcpy(&saved_mxcsr, area2 + 24, 4);
    if (saved_mxcsr != old)
        return -4; /* the second fxsave did not see the ldmxcsr */
    for (unsigned r = 0; r < 16; r++)
        for (unsigned j = 0; j < 16; j++) {
            if (area[160 + r * 16 + j] != pat[r][j])
                return -5; /* fxsave image */
            if (back[r][j] != pat[r][j])
                return -6; /* registers after fxrstor */
        }
    if (area2[160 + 0 * 16] != 0 || area2[160 + 3 * 16] != 0xff || area2[160 + 15 * 16 + 5] != 0)
        return -7; /* the clobbers were not what the second fxsave saw */
    return 0;
}
