/* Software CPU SSE/SSE2 floating point: every operation runs as the same host instruction
 * under the guest's MXCSR (exceptions masked), so results, NaNs, denormals and flags are the
 * hardware's; unmasked exceptions are then decided here and raise #XM (or #UD). */
#include <string.h>

#include "accel/emu/emu_internal.h"

#if defined(__x86_64__)

typedef long long v2di __attribute__((vector_size(16)));

enum {
    MX_IE = 1, MX_DE = 2, MX_ZE = 4, MX_OE = 8, MX_UE = 0x10, MX_PE = 0x20,
    MX_FLAGS = 0x3f, MX_MASKS = 0x1f80, MX_FTZ = 0x8000,
};

/* Which result lanes can underflow (for unmasked #U, which also fires on exact tiny results). */
enum tiny_kind { T_NONE, T_SS, T_SD, T_PS, T_PD, T_PS2 };

static inline v2di vget(struct emu_cpu *cpu, unsigned r)
{
    v2di v;
    memcpy(&v, &cpu->xmm[r], 16);
    return v;
}

static inline void vset(struct emu_cpu *cpu, unsigned r, v2di v) { memcpy(&cpu->xmm[r], &v, 16); }

/* The xmm/m source: size 16 (legacy SSE: aligned), 8 or 4 bytes into the low lanes. */
static v2di src_op(struct emu_cpu *cpu, const struct emu_insn *in, unsigned size)
{
    if (!in->mem) return vget(cpu, in->rm);
    uint64_t ea = emu_ea(cpu, in);
    uint64_t q[2] = {0, 0};
    if (size == 16) {
        uint64_t base = (in->seg == EMU_FS || in->seg == EMU_GS) ? cpu->seg[in->seg].base : 0;
        if ((ea + base) & 15) emu_gp0(cpu);
        uint64_t lin = emu_lin(cpu, in->seg, ea, in->asize);
        if (lin & 15) emu_gp0(cpu);
        q[0] = emu_read(cpu, lin, 8);
        q[1] = emu_read(cpu, lin + 8, 8);
    } else {
        q[0] = emu_read(cpu, emu_lin(cpu, in->seg, ea, in->asize), size);
    }
    v2di v;
    memcpy(&v, q, 16);
    return v;
}

static bool denormal32(uint32_t v) { return (v & 0x7f800000u) == 0 && (v & 0x7fffffu) != 0; }
static bool denormal64(uint64_t v) { return (v & 0x7ff0000000000000ull) == 0 && (v & 0xfffffffffffffull) != 0; }

static bool result_tiny(v2di r, enum tiny_kind k)
{
    uint32_t d[4];
    uint64_t q[2];
    memcpy(d, &r, 16);
    memcpy(q, &r, 16);
    switch (k) {
    case T_SS: return denormal32(d[0]);
    case T_SD: return denormal64(q[0]);
    case T_PS: return denormal32(d[0]) || denormal32(d[1]) || denormal32(d[2]) || denormal32(d[3]);
    case T_PS2: return denormal32(d[0]) || denormal32(d[1]);
    case T_PD: return denormal64(q[0]) || denormal64(q[1]);
    default: return false;
    }
}

/* The MXCSR the host runs the operation with: the guest's rounding, DAZ and FTZ, all
 * exceptions masked and no flags. FTZ does not apply when underflow is unmasked. */
static uint32_t run_mxcsr(const struct emu_cpu *cpu)
{
    uint32_t m = (cpu->mxcsr & 0xffff & ~(uint32_t)MX_FLAGS) | MX_MASKS;
    if (!(cpu->mxcsr & (MX_UE << 7))) m &= ~(uint32_t)MX_FTZ;
    return m;
}

static __attribute__((noreturn)) void raise_xm(struct emu_cpu *cpu)
{
    emu_raise(cpu, (cpu->cr4 & EMU_CR4_OSXMMEXCPT) ? EMU_XM : EMU_UD, false, 0);
}

/* Record the flags the host reported; raise #XM if one is unmasked. An unmasked
 * pre-computation exception (invalid, denormal, divide by zero) stops before the
 * post-computation ones are detected. The destination is written only after this returns. */
static void fp_commit(struct emu_cpu *cpu, uint32_t out, bool tiny)
{
    uint32_t f = out & MX_FLAGS;
    uint32_t unmasked = ~(cpu->mxcsr >> 7) & MX_FLAGS;
    uint32_t pre = f & (MX_IE | MX_DE | MX_ZE);
    if (pre & unmasked) {
        cpu->mxcsr |= pre;
        raise_xm(cpu);
    }
    if (tiny && (unmasked & MX_UE)) f |= MX_UE;
    cpu->mxcsr |= f;
    if (f & unmasked) raise_xm(cpu);
}

/* dst = dst op src with a host instruction; a is the destination, b the source. */
#define RUN2(insn)                                                                             \
    __asm__ volatile("stmxcsr %[host]\n\tldmxcsr %[run]\n\t" insn " %[b], %[a]\n\t"          \
                     "stmxcsr %[out]\n\tldmxcsr %[host]"                                       \
                     : [a] "+x"(a), [out] "=m"(out), [host] "=m"(host)                         \
                     : [b] "x"(b), [run] "m"(run))

#define ARITH4(o, name, tps, tpd, tss, tsd)                                                  \
    case (o) << 2 | 0: RUN2(name "ps"); tk = tps; break;                                      \
    case (o) << 2 | 1: RUN2(name "pd"); tk = tpd; break;                                      \
    case (o) << 2 | 3: RUN2(name "ss"); tk = tss; break;                                      \
    case (o) << 2 | 2: RUN2(name "sd"); tk = tsd; break;

#define CMP8(name)                                                                             \
    switch (imm & 7) {                                                                         \
    case 0: RUN2(name " $0,"); break;                                                          \
    case 1: RUN2(name " $1,"); break;                                                          \
    case 2: RUN2(name " $2,"); break;                                                          \
    case 3: RUN2(name " $3,"); break;                                                          \
    case 4: RUN2(name " $4,"); break;                                                          \
    case 5: RUN2(name " $5,"); break;                                                          \
    case 6: RUN2(name " $6,"); break;                                                          \
    default: RUN2(name " $7,"); break;                                                         \
    }

/* Size of the memory source by opcode and prefix (0 none, 1 66, 2 F2, 3 F3). */
static unsigned src_size(uint8_t op, unsigned pfx)
{
    switch (op) {
    case 0x2e: case 0x2f: return pfx == 1 ? 8 : 4;
    case 0x5a: return pfx == 0 ? 8 : pfx == 1 ? 16 : pfx == 3 ? 4 : 8; /* cvtps2pd reads m64 */
    case 0xe6: return pfx == 3 ? 8 : 16;                              /* cvtdq2pd reads m64 */
    case 0x5b: return 16;
    }
    return pfx == 3 ? 4 : pfx == 2 ? 8 : 16;
}

static void exec_cvt_int(struct emu_cpu *cpu, const struct emu_insn *in, unsigned pfx)
{
    uint32_t run = run_mxcsr(cpu), out, host;
    bool wide = in->rex & 8;
    if (in->op == 0x2a) { /* cvtsi2ss cvtsi2sd xmm, r/m32/64 */
        uint64_t s = in->mem ? emu_read(cpu, emu_lin(cpu, in->seg, emu_ea(cpu, in), in->asize), wide ? 8 : 4)
                             : cpu->r[in->rm];
        v2di a = vget(cpu, in->reg);
#define CVTSI(insn, mod)                                                                       \
    __asm__ volatile("stmxcsr %[host]\n\tldmxcsr %[run]\n\t" insn " %" mod "[s], %[a]\n\t"     \
                     "stmxcsr %[out]\n\tldmxcsr %[host]"                                       \
                     : [a] "+x"(a), [out] "=m"(out), [host] "=m"(host)                         \
                     : [s] "r"(s), [run] "m"(run))
        if (pfx == 3) {
            if (wide) CVTSI("cvtsi2ssq", "q");
            else CVTSI("cvtsi2ssl", "k");
        } else {
            if (wide) CVTSI("cvtsi2sdq", "q");
            else CVTSI("cvtsi2sdl", "k");
        }
#undef CVTSI
        fp_commit(cpu, out, false);
        vset(cpu, in->reg, a);
        return;
    }
    /* cvt(t)ss2si cvt(t)sd2si r32/64, xmm/m */
    v2di b = src_op(cpu, in, pfx == 3 ? 4 : 8);
    uint64_t d;
#define CVT2SI(insn, mod)                                                                      \
    __asm__ volatile("stmxcsr %[host]\n\tldmxcsr %[run]\n\t" insn " %[b], %" mod "[d]\n\t"     \
                     "stmxcsr %[out]\n\tldmxcsr %[host]"                                       \
                     : [d] "=r"(d), [out] "=m"(out), [host] "=m"(host)                         \
                     : [b] "x"(b), [run] "m"(run))
    bool trunc = in->op == 0x2c;
    if (pfx == 3) {
        if (trunc) { if (wide) CVT2SI("cvttss2si", "q"); else CVT2SI("cvttss2si", "k"); }
        else { if (wide) CVT2SI("cvtss2si", "q"); else CVT2SI("cvtss2si", "k"); }
    } else {
        if (trunc) { if (wide) CVT2SI("cvttsd2si", "q"); else CVT2SI("cvttsd2si", "k"); }
        else { if (wide) CVT2SI("cvtsd2si", "q"); else CVT2SI("cvtsd2si", "k"); }
    }
#undef CVT2SI
    fp_commit(cpu, out, false);
    cpu->r[in->reg] = wide ? d : (uint32_t)d;
}

static void exec_comis(struct emu_cpu *cpu, const struct emu_insn *in, unsigned pfx)
{
    uint32_t run = run_mxcsr(cpu), out, host;
    v2di a = vget(cpu, in->reg), b = src_op(cpu, in, pfx == 1 ? 8 : 4);
    bool z, p, c;
#define COMI(insn)                                                                             \
    __asm__ volatile("stmxcsr %[host]\n\tldmxcsr %[run]\n\t" insn " %[b], %[a]\n\t"          \
                     "stmxcsr %[out]\n\tldmxcsr %[host]"                                       \
                     : "=@ccz"(z), "=@ccp"(p), "=@ccc"(c), [out] "=m"(out), [host] "=m"(host)  \
                     : [a] "x"(a), [b] "x"(b), [run] "m"(run))
    if (in->op == 0x2e) { if (pfx == 1) COMI("ucomisd"); else COMI("ucomiss"); }
    else { if (pfx == 1) COMI("comisd"); else COMI("comiss"); }
#undef COMI
    fp_commit(cpu, out, false);
    uint64_t f = (z ? 0x40u : 0) | (p ? 0x4u : 0) | (c ? 0x1u : 0);
    emu_set_rflags(cpu, (emu_get_rflags(cpu) & ~(uint64_t)0x8d5) | f);
}

/* Run the operation (op, mandatory prefix) on the host: *pa = *pa op b. Returns the MXCSR
 * after it (flags), or ~0u for an encoding that is not implemented. */
static uint32_t fp_op(unsigned op, unsigned pfx, unsigned imm, v2di *pa, v2di b, uint32_t run, enum tiny_kind *ptk)
{
    v2di a = *pa;
    uint32_t out = run, host;
    enum tiny_kind tk = T_NONE;
    switch (op << 2 | pfx) {
    ARITH4(0x58, "add", T_PS, T_PD, T_SS, T_SD)
    ARITH4(0x59, "mul", T_PS, T_PD, T_SS, T_SD)
    ARITH4(0x5c, "sub", T_PS, T_PD, T_SS, T_SD)
    ARITH4(0x5e, "div", T_PS, T_PD, T_SS, T_SD)
    ARITH4(0x5d, "min", T_NONE, T_NONE, T_NONE, T_NONE)
    ARITH4(0x5f, "max", T_NONE, T_NONE, T_NONE, T_NONE)
    ARITH4(0x51, "sqrt", T_NONE, T_NONE, T_NONE, T_NONE)
    case 0x52 << 2 | 0: RUN2("rsqrtps"); break;
    case 0x52 << 2 | 3: RUN2("rsqrtss"); break;
    case 0x53 << 2 | 0: RUN2("rcpps"); break;
    case 0x53 << 2 | 3: RUN2("rcpss"); break;
    case 0x5a << 2 | 0: RUN2("cvtps2pd"); break;
    case 0x5a << 2 | 1: RUN2("cvtpd2ps"); tk = T_PS2; break;
    case 0x5a << 2 | 3: RUN2("cvtss2sd"); break;
    case 0x5a << 2 | 2: RUN2("cvtsd2ss"); tk = T_SS; break;
    case 0x5b << 2 | 0: RUN2("cvtdq2ps"); break;
    case 0x5b << 2 | 1: RUN2("cvtps2dq"); break;
    case 0x5b << 2 | 3: RUN2("cvttps2dq"); break;
    case 0xe6 << 2 | 1: RUN2("cvttpd2dq"); break;
    case 0xe6 << 2 | 3: RUN2("cvtdq2pd"); break;
    case 0xe6 << 2 | 2: RUN2("cvtpd2dq"); break;
    case 0xc2 << 2 | 0: CMP8("cmpps"); break;
    case 0xc2 << 2 | 1: CMP8("cmppd"); break;
    case 0xc2 << 2 | 3: CMP8("cmpss"); break;
    case 0xc2 << 2 | 2: CMP8("cmpsd"); break;
    default: return ~0u;
    }
    *pa = a;
    *ptk = tk;
    return out;
}

/* A finite value as m * 2^e with an integer significand m. */
static uint64_t fp_split(uint64_t bits, bool dbl, int *e, bool *neg)
{
    unsigned mb = dbl ? 52 : 23, eb = dbl ? 11 : 8;
    int bias = dbl ? 1023 : 127;
    uint64_t frac = bits & ((1ull << mb) - 1);
    unsigned ex = (unsigned)(bits >> mb) & ((1u << eb) - 1);
    *neg = (bits >> (mb + eb)) & 1;
    if (ex == 0) {
        *e = 1 - bias - (int)mb;
        return frac;
    }
    *e = (int)ex - bias - (int)mb;
    return frac | 1ull << mb;
}

/* Whether an integer fits in p significant bits. */
static bool fits(unsigned __int128 m, unsigned p)
{
    if (!m) return true;
    while (!(m & 1)) m >>= 1;
    return m >> p == 0;
}

/* Whether x op y is exact when rounded to the result's precision with an unbounded exponent
 * (what decides PE when an unmasked overflow or underflow traps). */
static bool exact_unbounded(unsigned op, uint64_t x, uint64_t y, bool dbl)
{
    unsigned p = dbl ? 53 : 24;
    int ex, ey;
    bool nx, ny;
    uint64_t mx = fp_split(x, dbl, &ex, &nx), my = fp_split(y, dbl, &ey, &ny);
    switch (op) {
    case 0x59: return fits((unsigned __int128)mx * my, p);
    case 0x5e: {
        if (!my) return true;
        uint64_t oy = my >> __builtin_ctzll(my);
        return mx % oy == 0 && fits(mx / oy, p);
    }
    case 0x58: case 0x5c: {
        if (op == 0x5c) ny = !ny;
        if (!mx || !my) return true;
        if (ex < ey) { uint64_t t = mx; mx = my; my = t; int te = ex; ex = ey; ey = te; bool tn = nx; nx = ny; ny = tn; }
        unsigned t = (unsigned)__builtin_ctzll(my);
        my >>= t;
        long d = (long)ex - ey - t; /* the sum is 2^(ey+t) * (mx * 2^d +- my), my odd */
        if (d <= 0) {                /* both shifted into range exactly */
            unsigned __int128 a = (unsigned __int128)mx << (ex - ey);
            unsigned __int128 b = (unsigned __int128)my << t;
            return fits(nx == ny ? a + b : a > b ? a - b : b - a, p);
        }
        if (d > (long)p + 2) return false; /* odd, and wider than p bits */
        unsigned __int128 a = (unsigned __int128)mx << d;
        return fits(nx == ny ? a + my : a > my ? a - my : my - a, p);
    }
    default: return fits(my, 24); /* cvtsd2ss cvtpd2ps: y is the double */
    }
}

/* PE when an unmasked overflow or underflow traps: per element, inexact at the result's
 * precision with an unbounded exponent if that element over- or underflowed, else as usual. */
static uint32_t wrapped_pe(unsigned op, unsigned pfx, v2di a0, v2di b, uint32_t run, enum tiny_kind tk,
                           uint32_t out, uint32_t unmasked)
{
    unsigned lanes = tk == T_PS ? 4 : (tk == T_PD || tk == T_PS2) ? 2 : 1;
    bool dsrc = tk == T_SD || tk == T_PD || op == 0x5a, dres = tk == T_SD || tk == T_PD;
    uint32_t pe = 0;
    for (unsigned i = 0; i < lanes; i++) {
        v2di x = a0, y = b;
        uint32_t f = out;
        enum tiny_kind dummy;
        if (lanes > 1) { /* the element alone: the others 1.0, which raise nothing */
            uint32_t d[4];
            uint64_t q[2];
            if (dsrc) {
                memcpy(q, &y, 16); for (unsigned j = 0; j < 2; j++) if (j != i) q[j] = 0x3ff0000000000000ull; memcpy(&y, q, 16);
                memcpy(q, &x, 16); for (unsigned j = 0; j < 2; j++) if (j != i) q[j] = 0x3ff0000000000000ull; memcpy(&x, q, 16);
            } else {
                memcpy(d, &y, 16); for (unsigned j = 0; j < 4; j++) if (j != i) d[j] = 0x3f800000u; memcpy(&y, d, 16);
                memcpy(d, &x, 16); for (unsigned j = 0; j < 4; j++) if (j != i) d[j] = 0x3f800000u; memcpy(&x, d, 16);
            }
            v2di r = x;
            f = fp_op(op, pfx, 0, &r, y, run, &dummy);
            uint32_t rd[4];
            uint64_t rq[2];
            memcpy(rd, &r, 16);
            memcpy(rq, &r, 16);
            bool den = dres ? denormal64(rq[i]) : denormal32(rd[i]);
            if (!((f & unmasked & MX_OE) || ((unmasked & MX_UE) && ((f & MX_UE) || den)))) {
                pe |= f & MX_PE;
                continue;
            }
        }
        uint64_t xv, yv;
        if (dsrc) {
            uint64_t q[2];
            memcpy(q, &x, 16); xv = q[i];
            memcpy(q, &y, 16); yv = q[i];
        } else {
            uint32_t d[4];
            memcpy(d, &x, 16); xv = d[i];
            memcpy(d, &y, 16); yv = d[i];
        }
        if (!exact_unbounded(op, xv, yv, dsrc)) pe |= MX_PE;
    }
    return pe;
}

void emu_exec_sse_fp(struct emu_cpu *cpu, const struct emu_insn *in, unsigned pfx)
{
    uint8_t op = in->op;
    switch (op) {
    case 0x2a: case 0x2c: case 0x2d: exec_cvt_int(cpu, in, pfx); return;
    case 0x2e: case 0x2f: exec_comis(cpu, in, pfx); return;
    case 0x50: { /* movmskps movmskpd */
        uint64_t q[2];
        memcpy(q, &cpu->xmm[in->rm], 16);
        uint64_t m;
        if (pfx == 1) m = (q[0] >> 63) | ((q[1] >> 63) << 1);
        else m = ((q[0] >> 31) & 1) | ((q[0] >> 62) & 2) | (((q[1] >> 31) & 1) << 2) | (((q[1] >> 63) & 1) << 3);
        cpu->r[in->reg] = m;
        return;
    }
    }
    v2di a = vget(cpu, in->reg), b = src_op(cpu, in, src_size(op, pfx)), a0 = a;
    uint32_t run = run_mxcsr(cpu);
    enum tiny_kind tk;
    uint32_t out = fp_op(op, pfx, (unsigned)in->imm, &a, b, run, &tk);
    if (out == ~0u) emu_ud(cpu);
    bool tiny = tk != T_NONE && result_tiny(a, tk);
    uint32_t unmasked = ~(cpu->mxcsr >> 7) & MX_FLAGS;
    if (tk != T_NONE && !(out & unmasked & (MX_IE | MX_DE | MX_ZE)) &&
        ((out & unmasked & (MX_OE | MX_UE)) || (tiny && (unmasked & MX_UE))))
        out = (out & ~(uint32_t)MX_PE) | wrapped_pe(op, pfx, a0, b, run, tk, out, unmasked);
    fp_commit(cpu, out, tiny);
    vset(cpu, in->reg, a);
}

#else

void emu_exec_sse_fp(struct emu_cpu *cpu, const struct emu_insn *in, unsigned pfx)
{
    (void)in;
    (void)pfx;
    emu_ud(cpu); /* computed with host instructions: x86-64 hosts only */
}

#endif
