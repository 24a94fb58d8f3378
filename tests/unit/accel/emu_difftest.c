/* Differential test of the software CPU against the host CPU: random instruction sequences
 * from random register/flag states run natively (in a forked child, via sigreturn) and in the
 * emulator; registers, flags, XMM, scratch memory and faults must agree. Failing cases shrink
 * to a minimal reproducer. Also checks decoder lengths/#UD against the host on random bytes.
 *
 * Usage: emu_difftest [--cases N] [--seed S] [--lengths N] [--verbose]
 * Environment: VMKIT_DIFFTEST_CASES, VMKIT_DIFFTEST_SEED override the defaults. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <cpuid.h>
#include <unistd.h>

#include "accel/emu/emu_cpu.h"

#define CODE_ADDR 0x10000000ull
#define CODE_SIZE 0x1000ull
#define SCRATCH_ADDR 0x10001000ull
#define SCRATCH_SIZE 0x2000ull
#define R15_VALUE (SCRATCH_ADDR + 0x800)
#define RSP_VALUE (SCRATCH_ADDR + 0x1400)
#define MAX_INSNS 24
#define MAX_CODE 400
#define BATCH 500

#define STATUS_FLAGS 0x8d5u /* CF PF AF ZF SF OF */
#define DF_FLAG 0x400u

/* ---------------- random ---------------- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static unsigned rndn(unsigned n) { return (unsigned)(rnd() % n); }

static uint64_t rnd_value(void)
{
    switch (rndn(8)) {
    case 0: return rndn(4);
    case 1: return (uint64_t)-(int64_t)rndn(3) - 1;
    case 2: return 1ull << rndn(64);
    case 3: return (1ull << rndn(64)) - 1;
    case 4: return rndn(256);
    case 5: return (uint64_t)(int64_t)(int32_t)rnd();
    case 6: return rnd() & 0xffffffff;
    default: return rnd();
    }
}

/* Floating-point operands: the values where rounding, NaN propagation, denormal handling,
 * overflow/underflow and integer conversions differ. */
static uint64_t rnd_f64(void)
{
    uint64_t sign = (uint64_t)rndn(2) << 63, mant = rnd() & 0xfffffffffffffull;
    static const uint64_t fixed[] = {
        0x0000000000000000ull, 0x7ff0000000000000ull, 0x7ff8000000000000ull, 0x3ff0000000000000ull,
        0x3fe0000000000000ull, 0x3ff8000000000000ull, 0x4004000000000000ull, 0x0010000000000000ull,
        0x7fefffffffffffffull, 0x000fffffffffffffull, 0x0000000000000001ull,
        0x41dfffffffc00000ull, /* 2^31 - 1 */ 0x41dfffffffe00000ull, /* 2^31 - 0.5 */
        0x41dfffffffffffffull, /* just under 2^31 */ 0x41e0000000000000ull, /* 2^31 */
        0xc1e0000000100000ull, /* -2^31 - 0.5 */ 0xc1e0000000200000ull, /* -2^31 - 1 */
        0x43e0000000000000ull, /* 2^63 */ 0x43dfffffffffffffull, /* largest below 2^63 */
        0x4330000000000000ull, /* 2^52 */ 0x4160000000000000ull, 0x3cb0000000000000ull,
    };
    switch (rndn(12)) {
    case 0: case 1: return sign | fixed[rndn(sizeof(fixed) / sizeof(fixed[0]))];
    case 2: return sign | 0x7ff8000000000000ull | (rndn(2) ? mant : 0);  /* QNaN */
    case 3: return sign | 0x7ff0000000000000ull | (mant >> 1) | 1;     /* SNaN */
    case 4: return sign | mant;                                        /* denormal */
    case 5: return sign | ((uint64_t)rndn(60) << 52) | mant;           /* products underflow */
    case 6: return sign | ((uint64_t)(2046 - rndn(60)) << 52) | mant;  /* products overflow */
    case 7: { double d = (double)(int64_t)rnd_value(); uint64_t v; memcpy(&v, &d, 8); return v; }
    case 8: { double d = (double)((int)rndn(2001) - 1000) / (1 << rndn(4)); uint64_t v; memcpy(&v, &d, 8); return v; }
    case 9: return sign | ((uint64_t)(1023 - 30 + rndn(40)) << 52) | mant; /* near integer limits */
    default: return rnd();
    }
}

static uint32_t rnd_f32(void)
{
    uint32_t sign = rndn(2) << 31, mant = (uint32_t)rnd() & 0x7fffff;
    static const uint32_t fixed[] = {
        0x00000000, 0x7f800000, 0x7fc00000, 0x3f800000, 0x3f000000, 0x3fc00000, 0x40200000,
        0x00800000, 0x7f7fffff, 0x007fffff, 0x00000001, 0x4f000000 /* 2^31 */, 0x4effffff,
        0x5f000000 /* 2^63 */, 0x5effffff, 0x4b000000 /* 2^23 */, 0x33800000,
    };
    switch (rndn(12)) {
    case 0: case 1: return sign | fixed[rndn(sizeof(fixed) / sizeof(fixed[0]))];
    case 2: return sign | 0x7fc00000 | (rndn(2) ? mant : 0);
    case 3: return sign | 0x7f800000 | (mant >> 1) | 1;
    case 4: return sign | mant;
    case 5: return sign | (rndn(30) << 23) | mant;
    case 6: return sign | ((254 - rndn(30)) << 23) | mant;
    case 7: { float f = (float)(int64_t)rnd_value(); uint32_t v; memcpy(&v, &f, 4); return v; }
    case 8: { float f = (float)((int)rndn(2001) - 1000) / (float)(1 << rndn(4)); uint32_t v; memcpy(&v, &f, 4); return v; }
    case 9: return sign | ((127 - 20 + rndn(50)) << 23) | mant;
    default: return (uint32_t)rnd();
    }
}

/* One 64-bit lane: a double, two floats, or an integer. */
static uint64_t rnd_lane(unsigned kind)
{
    if (kind == 0) return rnd_f64();
    if (kind == 1) return rnd_f32() | (uint64_t)rnd_f32() << 32;
    return rnd_value();
}

/* An 80-bit x87 value: a double's special values widened exactly, or raw bit patterns
 * (80-bit denormals, pseudo-denormals, unnormals, large exponents). */
static void rnd_f80(uint8_t out[10])
{
    uint64_t m;
    uint16_t se;
    if (rndn(4)) {
        uint64_t d = rnd_f64(), mant = d & 0xfffffffffffffull;
        unsigned e = (unsigned)(d >> 52) & 0x7ff;
        se = (uint16_t)((d >> 63) << 15);
        if (e == 0 && mant == 0) m = 0;
        else if (e == 0) {
            unsigned lz = (unsigned)__builtin_clzll(mant);
            m = mant << lz;
            se |= (uint16_t)(16383 + 63 - 1074 - lz);
        } else if (e == 0x7ff) {
            m = 1ull << 63 | mant << 11;
            se |= 0x7fff;
        } else {
            m = 1ull << 63 | mant << 11;
            se |= (uint16_t)(e - 1023 + 16383);
        }
    } else {
        m = rnd();
        if (rndn(2)) m |= 1ull << 63;
        unsigned k = rndn(4);
        se = (uint16_t)(k == 0 ? rndn(3) : k == 1 ? 0x7fff - rndn(3) : k == 2 ? 16383 - 70 + rndn(140) : rnd());
        se |= (uint16_t)(rndn(2) << 15);
    }
    memcpy(out, &m, 8);
    memcpy(out + 8, &se, 2);
}

/* MXCSR: any rounding mode, FTZ/DAZ, sometimes unmasked exceptions and sticky flags. */
static uint32_t rnd_mxcsr(void)
{
    uint32_t mx = 0x1f80;
    if (rndn(2)) mx |= rndn(4) << 13;
    if (rndn(4) == 0) mx |= 0x8000;
    if (rndn(4) == 0) mx |= 0x40;
    if (rndn(4) == 0) mx &= ~((uint32_t)rnd() & 0x1f80);
    if (rndn(4) == 0) mx |= (uint32_t)rnd() & 0x3f;
    return mx;
}

/* ---------------- cases ---------------- */

struct xmmv {
    uint64_t q[2];
};

struct state {
    uint64_t r[16];
    uint64_t rip, rflags;
    struct xmmv xmm[16];
    uint32_t mxcsr;
    uint16_t fcw, fsw;
    uint8_t ftw;       /* abridged: bit i set when physical register i is in use */
    uint8_t st[8][10]; /* ST(0)..ST(7) */
};

struct insn_meta {
    uint8_t off, len;
    uint16_t undef;  /* flags this instruction leaves undefined */
    uint16_t writes; /* flags it always writes (clears earlier undefinedness) */
    bool reads;      /* reads status flags */
    const char *name;
};

struct tcase {
    bool m32; /* runs as 32-bit code (compatibility mode) */
    struct state in;
    uint64_t mem_seed;
    unsigned ninsns;
    struct insn_meta meta[MAX_INSNS];
    unsigned code_len; /* without the final hlt */
    uint8_t code[MAX_CODE];
};

struct result {
    struct state out;
    uint64_t trapno, err, cr2;
    int status; /* 0 ok, else harness failure */
    uint8_t scratch[SCRATCH_SIZE];
};

static void fill_scratch(uint8_t *buf, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (unsigned i = 0; i < SCRATCH_SIZE; i += 8) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t v = s * 0x2545F4914F6CDD1Dull;
        if ((i & 0x38) == 0) v &= 0xff; /* some small values so compares and bit ops vary */
        /* Floating-point special values (the generator's own rng state is left alone). */
        if ((i & 0x38) == 0x10 || (i & 0x38) == 0x28) {
            uint64_t saved = rng_state;
            rng_state = v | 1;
            v = rnd_lane(((i >> 6) & 1) ^ (unsigned)(v >> 63));
            rng_state = saved;
        }
        memcpy(buf + i, &v, 8);
    }
}

/* ---------------- generator ---------------- */

enum shape {
    S_ALU,     /* op8/opv r/m, reg or reg, r/m (dir bit) */
    S_GRP_I,   /* 80/81/83 /ext */
    S_UNARY,   /* F6/F7 /ext, FE/FF /ext, D0-D3 shifts */
    S_SHIFT_I, /* C0/C1 /ext ib */
    S_REG_RM,  /* dst reg, src r/m: 0F xx */
    S_RM_REG,  /* dst r/m, src reg (writes r/m) */
    S_NONE,    /* no operands */
    S_OPREG,   /* opcode + reg */
    S_STRING,
    S_SSE,     /* 66 0F xx /r */
    S_SSE_I,   /* 66 0F xx /r ib */
    S_SSE_SHIFT_I, /* 66 0F 71-73 /ext ib */
    S_BRANCH,  /* jcc/jmp/loop/jrcxz over another instruction, call/ret pair */
    S_MISC,    /* cmpxchg8b/16b, enter/leave, bt with a register offset into memory */
    S_SSEFP,   /* SSE/SSE2 floating point, float-typed moves and shuffles, ldmxcsr/stmxcsr */
    S_X87,     /* x87 D8-DF, register and memory forms (not fldcw: exceptions stay masked) */
};

enum { F_CF = 1, F_PF = 4, F_AF = 0x10, F_ZF = 0x40, F_SF = 0x80, F_OF = 0x800, F_ALL = 0x8d5 };

struct gen_op {
    const char *name;
    enum shape shape;
    uint8_t map;      /* 0 or 1 (0F) */
    uint8_t op8, opv; /* byte / word-dword-qword opcodes (0 = none) */
    int8_t ext;       /* /digit, or -1 */
    uint8_t sizes;    /* allowed sizes bitmask: 1 2 4 8 */
    uint16_t undef, writes;
    uint8_t reads;
    uint8_t mem;      /* 0 never, 1 allowed, 2 required */
    uint8_t wr;       /* 1: writes reg field, 2: writes r/m, 3: both, 0: neither */
};

#define SZ_ALL 0xf
#define SZ_V 0xe
static const struct gen_op ops[] = {
    {"add", S_ALU, 0, 0x00, 0x01, -1, SZ_ALL, 0, F_ALL, 0, 1, 2},
    {"or", S_ALU, 0, 0x08, 0x09, -1, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"adc", S_ALU, 0, 0x10, 0x11, -1, SZ_ALL, 0, F_ALL, 1, 1, 2},
    {"sbb", S_ALU, 0, 0x18, 0x19, -1, SZ_ALL, 0, F_ALL, 1, 1, 2},
    {"and", S_ALU, 0, 0x20, 0x21, -1, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"sub", S_ALU, 0, 0x28, 0x29, -1, SZ_ALL, 0, F_ALL, 0, 1, 2},
    {"xor", S_ALU, 0, 0x30, 0x31, -1, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"cmp", S_ALU, 0, 0x38, 0x39, -1, SZ_ALL, 0, F_ALL, 0, 1, 0},
    {"test", S_ALU, 0, 0x84, 0x85, -1, SZ_ALL, F_AF, F_ALL, 0, 1, 0},
    {"xchg", S_ALU, 0, 0x86, 0x87, -1, SZ_ALL, 0, 0, 0, 1, 3},
    {"mov", S_ALU, 0, 0x88, 0x89, -1, SZ_ALL, 0, 0, 0, 1, 2},
    {"addi", S_GRP_I, 0, 0x80, 0x81, 0, SZ_ALL, 0, F_ALL, 0, 1, 2},
    {"ori", S_GRP_I, 0, 0x80, 0x81, 1, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"adci", S_GRP_I, 0, 0x80, 0x81, 2, SZ_ALL, 0, F_ALL, 1, 1, 2},
    {"sbbi", S_GRP_I, 0, 0x80, 0x81, 3, SZ_ALL, 0, F_ALL, 1, 1, 2},
    {"andi", S_GRP_I, 0, 0x80, 0x83, 4, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"subi", S_GRP_I, 0, 0x80, 0x83, 5, SZ_ALL, 0, F_ALL, 0, 1, 2},
    {"xori", S_GRP_I, 0, 0x80, 0x81, 6, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"cmpi", S_GRP_I, 0, 0x80, 0x83, 7, SZ_ALL, 0, F_ALL, 0, 1, 0},
    {"movi", S_GRP_I, 0, 0xc6, 0xc7, 0, SZ_ALL, 0, 0, 0, 1, 2},
    {"testi", S_GRP_I, 0, 0xf6, 0xf7, 0, SZ_ALL, F_AF, F_ALL, 0, 1, 0},
    {"not", S_UNARY, 0, 0xf6, 0xf7, 2, SZ_ALL, 0, 0, 0, 1, 2},
    {"neg", S_UNARY, 0, 0xf6, 0xf7, 3, SZ_ALL, 0, F_ALL, 0, 1, 2},
    {"mul", S_UNARY, 0, 0xf6, 0xf7, 4, SZ_ALL, F_SF | F_ZF | F_AF | F_PF, F_ALL, 0, 1, 0},
    {"imul1", S_UNARY, 0, 0xf6, 0xf7, 5, SZ_ALL, F_SF | F_ZF | F_AF | F_PF, F_ALL, 0, 1, 0},
    {"div", S_UNARY, 0, 0xf6, 0xf7, 6, SZ_ALL, F_ALL, F_ALL, 0, 1, 0},
    {"idiv", S_UNARY, 0, 0xf6, 0xf7, 7, SZ_ALL, F_ALL, F_ALL, 0, 1, 0},
    {"inc", S_UNARY, 0, 0xfe, 0xff, 0, SZ_ALL, 0, F_ALL & ~F_CF, 0, 1, 2},
    {"dec", S_UNARY, 0, 0xfe, 0xff, 1, SZ_ALL, 0, F_ALL & ~F_CF, 0, 1, 2},
    {"rol1", S_UNARY, 0, 0xd0, 0xd1, 0, SZ_ALL, 0, F_CF | F_OF, 0, 1, 2},
    {"ror1", S_UNARY, 0, 0xd0, 0xd1, 1, SZ_ALL, 0, F_CF | F_OF, 0, 1, 2},
    {"rcl1", S_UNARY, 0, 0xd0, 0xd1, 2, SZ_ALL, 0, F_CF | F_OF, 1, 1, 2},
    {"rcr1", S_UNARY, 0, 0xd0, 0xd1, 3, SZ_ALL, 0, F_CF | F_OF, 1, 1, 2},
    {"shl1", S_UNARY, 0, 0xd0, 0xd1, 4, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"shr1", S_UNARY, 0, 0xd0, 0xd1, 5, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"sar1", S_UNARY, 0, 0xd0, 0xd1, 7, SZ_ALL, F_AF, F_ALL, 0, 1, 2},
    {"rolcl", S_UNARY, 0, 0xd2, 0xd3, 0, SZ_ALL, F_OF, 0, 0, 1, 2},
    {"rorcl", S_UNARY, 0, 0xd2, 0xd3, 1, SZ_ALL, F_OF, 0, 0, 1, 2},
    {"rclcl", S_UNARY, 0, 0xd2, 0xd3, 2, SZ_ALL, F_OF, 0, 1, 1, 2},
    {"rcrcl", S_UNARY, 0, 0xd2, 0xd3, 3, SZ_ALL, F_OF, 0, 1, 1, 2},
    {"shlcl", S_UNARY, 0, 0xd2, 0xd3, 4, SZ_ALL, F_OF | F_AF | F_CF, 0, 0, 1, 2},
    {"shrcl", S_UNARY, 0, 0xd2, 0xd3, 5, SZ_ALL, F_OF | F_AF | F_CF, 0, 0, 1, 2},
    {"sarcl", S_UNARY, 0, 0xd2, 0xd3, 7, SZ_ALL, F_OF | F_AF, 0, 0, 1, 2},
    {"roli", S_SHIFT_I, 0, 0xc0, 0xc1, 0, SZ_ALL, F_OF, 0, 0, 1, 2},
    {"rori", S_SHIFT_I, 0, 0xc0, 0xc1, 1, SZ_ALL, F_OF, 0, 0, 1, 2},
    {"rcli", S_SHIFT_I, 0, 0xc0, 0xc1, 2, SZ_ALL, F_OF, 0, 1, 1, 2},
    {"rcri", S_SHIFT_I, 0, 0xc0, 0xc1, 3, SZ_ALL, F_OF, 0, 1, 1, 2},
    {"shli", S_SHIFT_I, 0, 0xc0, 0xc1, 4, SZ_ALL, F_OF | F_AF | F_CF, 0, 0, 1, 2},
    {"shri", S_SHIFT_I, 0, 0xc0, 0xc1, 5, SZ_ALL, F_OF | F_AF | F_CF, 0, 0, 1, 2},
    {"sari", S_SHIFT_I, 0, 0xc0, 0xc1, 7, SZ_ALL, F_OF | F_AF, 0, 0, 1, 2},
    {"movzxb", S_REG_RM, 1, 0, 0xb6, -1, SZ_V, 0, 0, 0, 1, 1},
    {"movzxw", S_REG_RM, 1, 0, 0xb7, -1, SZ_V, 0, 0, 0, 1, 1},
    {"movsxb", S_REG_RM, 1, 0, 0xbe, -1, SZ_V, 0, 0, 0, 1, 1},
    {"movsxw", S_REG_RM, 1, 0, 0xbf, -1, SZ_V, 0, 0, 0, 1, 1},
    {"movsxd", S_REG_RM, 0, 0, 0x63, -1, 0x8, 0, 0, 0, 1, 1},
    {"lea", S_REG_RM, 0, 0, 0x8d, -1, SZ_V, 0, 0, 0, 2, 1},
    {"imul2", S_REG_RM, 1, 0, 0xaf, -1, SZ_V, F_SF | F_ZF | F_AF | F_PF, F_ALL, 0, 1, 1},
    {"bsf", S_REG_RM, 1, 0, 0xbc, -1, SZ_V, F_CF | F_OF | F_SF | F_AF | F_PF, F_ALL, 0, 1, 1},
    {"bsr", S_REG_RM, 1, 0, 0xbd, -1, SZ_V, F_CF | F_OF | F_SF | F_AF | F_PF, F_ALL, 0, 1, 1},
    {"cmovcc", S_REG_RM, 1, 0, 0x40, -1, SZ_V, 0, 0, 1, 1, 1},
    {"setcc", S_RM_REG, 1, 0x90, 0, -1, 1, 0, 0, 1, 1, 2},
    {"bt", S_RM_REG, 1, 0, 0xa3, -1, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 0},
    {"bts", S_RM_REG, 1, 0, 0xab, -1, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 2},
    {"btr", S_RM_REG, 1, 0, 0xb3, -1, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 2},
    {"btc", S_RM_REG, 1, 0, 0xbb, -1, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 2},
    {"bti", S_SHIFT_I, 1, 0, 0xba, 4, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 0},
    {"btsi", S_SHIFT_I, 1, 0, 0xba, 5, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 2},
    {"btri", S_SHIFT_I, 1, 0, 0xba, 6, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 2},
    {"btci", S_SHIFT_I, 1, 0, 0xba, 7, SZ_V, F_OF | F_SF | F_AF | F_PF, F_CF | F_OF | F_SF | F_AF | F_PF, 0, 1, 2},
    {"cmpxchg", S_RM_REG, 1, 0xb0, 0xb1, -1, SZ_ALL, 0, F_ALL, 0, 1, 2},
    {"xadd", S_RM_REG, 1, 0xc0, 0xc1, -1, SZ_ALL, 0, F_ALL, 0, 1, 3},
    {"shldi", S_SHIFT_I, 1, 0, 0xa4, -1, 0xc, F_OF | F_AF, 0, 0, 1, 2},
    {"shrdi", S_SHIFT_I, 1, 0, 0xac, -1, 0xc, F_OF | F_AF, 0, 0, 1, 2},
    {"shldcl", S_RM_REG, 1, 0, 0xa5, -1, 0xc, F_OF | F_AF, 0, 0, 1, 2},
    {"shrdcl", S_RM_REG, 1, 0, 0xad, -1, 0xc, F_OF | F_AF, 0, 0, 1, 2},
    {"popcnt", S_REG_RM, 1, 0, 0xb8, -1, SZ_V, 0, F_ALL, 0, 1, 1},
    {"tzcnt", S_REG_RM, 1, 0, 0xbc, -1, SZ_V, F_OF | F_SF | F_AF | F_PF, F_ALL, 0, 1, 1},
    {"lzcnt", S_REG_RM, 1, 0, 0xbd, -1, SZ_V, F_OF | F_SF | F_AF | F_PF, F_ALL, 0, 1, 1},
    {"bswap", S_OPREG, 1, 0, 0xc8, -1, 0xc, 0, 0, 0, 0, 1},
    {"push", S_OPREG, 0, 0, 0x50, -1, 0xa, 0, 0, 0, 0, 0},
    {"pop", S_OPREG, 0, 0, 0x58, -1, 0xa, 0, 0, 0, 0, 1},
    {"xchgax", S_OPREG, 0, 0, 0x90, -1, SZ_V, 0, 0, 0, 0, 1},
    {"movri", S_OPREG, 0, 0xb0, 0xb8, -1, SZ_ALL, 0, 0, 0, 0, 1},
    {"pushrm", S_UNARY, 0, 0, 0xff, 6, 0xa, 0, 0, 0, 2, 0},
    {"poprm", S_UNARY, 0, 0, 0x8f, 0, 0xa, 0, 0, 0, 2, 0},
    {"none", S_NONE, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0},
    {"string", S_STRING, 0, 0, 0, -1, SZ_ALL, 0, 0, 0, 0, 0},
    {"sse", S_SSE, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"ssei", S_SSE_I, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"sseshift", S_SSE_SHIFT_I, 1, 0, 0, -1, 0, 0, 0, 0, 0, 0},
    {"branch", S_BRANCH, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0},
    {"branch", S_BRANCH, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0},
    {"misc", S_MISC, 0, 0, 0, -1, SZ_V, 0, 0, 0, 1, 0},
    {"misc", S_MISC, 0, 0, 0, -1, SZ_V, 0, 0, 0, 1, 0},
    {"misc", S_MISC, 0, 0, 0, -1, SZ_V, 0, 0, 0, 1, 0},
    {"imul3", S_REG_RM, 0, 0, 0x69, -1, SZ_V, F_SF | F_ZF | F_AF | F_PF, F_ALL, 0, 1, 1},
    {"movnti", S_RM_REG, 1, 0, 0xc3, -1, 0xc, 0, 0, 0, 2, 0},
    {"ssefp", S_SSEFP, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"ssefp", S_SSEFP, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"ssefp", S_SSEFP, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"ssefp", S_SSEFP, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"ssefp", S_SSEFP, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"ssefp", S_SSEFP, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"x87", S_X87, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"x87", S_X87, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"x87", S_X87, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0},
    {"x87", S_X87, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0},
};

/* Floating-point SSE operations: opcode, allowed mandatory prefixes (bit 0 none, 1 66, 2 F2,
 * 3 F3), operand kind and name. */
enum { K_XX, K_XXI, K_XG, K_GX, K_GXR, K_COMI, K_XXR, K_LDMX };
static const struct { uint8_t op, pfx, kind; const char *name; } fp_ops[] = {
    {0x58, 0xf, K_XX, "add"}, {0x59, 0xf, K_XX, "mul"}, {0x5c, 0xf, K_XX, "sub"}, {0x5e, 0xf, K_XX, "div"},
    {0x5d, 0xf, K_XX, "min"}, {0x5f, 0xf, K_XX, "max"}, {0x51, 0xf, K_XX, "sqrt"},
    {0x52, 0x9, K_XX, "rsqrt"}, {0x53, 0x9, K_XX, "rcp"},
    {0x5a, 0xf, K_XX, "cvtps2pd/pd2ps/sd2ss/ss2sd"}, {0x5b, 0xb, K_XX, "cvtdq2ps/ps2dq/tps2dq"},
    {0xe6, 0xe, K_XX, "cvttpd2dq/pd2dq/dq2pd"}, {0xc2, 0xf, K_XXI, "cmp"},
    {0x2a, 0xc, K_XG, "cvtsi2ss/sd"}, {0x2c, 0xc, K_GX, "cvttss2si/sd2si"}, {0x2d, 0xc, K_GX, "cvtss2si/sd2si"},
    {0x2e, 0x3, K_COMI, "ucomiss/sd"}, {0x2f, 0x3, K_COMI, "comiss/sd"}, {0x50, 0x3, K_GXR, "movmskps/pd"},
    {0xc6, 0x3, K_XXI, "shufps/pd"}, {0x14, 0x3, K_XX, "unpcklps/pd"}, {0x15, 0x3, K_XX, "unpckhps/pd"},
    {0x28, 0x3, K_XX, "movaps/pd"}, {0x29, 0x3, K_XX, "movaps/pd store"}, {0x10, 0xf, K_XX, "movups/pd/ss/sd"},
    {0x11, 0xf, K_XX, "movups/pd/ss/sd store"}, {0x12, 0x1, K_XXR, "movhlps"}, {0x16, 0x1, K_XXR, "movlhps"},
    {0x12, 0x3, K_XX, "movlps/pd"}, {0x16, 0x3, K_XX, "movhps/pd"},
    {0x54, 0x3, K_XX, "andps/pd"}, {0x55, 0x3, K_XX, "andnps/pd"}, {0x56, 0x3, K_XX, "orps/pd"},
    {0x57, 0x3, K_XX, "xorps/pd"}, {0xae, 0x1, K_LDMX, "ldmxcsr/stmxcsr"},
};

/* Memory operands of packed SSE instructions should usually be aligned. */
static bool g_align;

/* SSE2 two-operand ops (66 0F xx /r) and their alignment needs. */
static const uint8_t sse_ops[] = {
    0x14, 0x15, 0x28, 0x54, 0x55, 0x56, 0x57, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6f, 0x74, 0x75, 0x76, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd8, 0xd9,
    0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe8, 0xe9, 0xea, 0xeb,
    0xec, 0xed, 0xee, 0xef, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
    0xfe, 0x7f, 0x29, 0xd6, 0x7e, 0x6e, 0xd7, 0x10, 0x11, 0x12, 0x13, 0x16, 0x17,
};

struct emitter {
    uint8_t buf[32];
    unsigned n;
    int disp_at;        /* offset of a rip-relative disp32 to patch, or -1 */
    uint64_t rip_target;
};

static void emit(struct emitter *e, uint8_t b) { e->buf[e->n++] = b; }
static void emit32(struct emitter *e, uint32_t v) { for (int i = 0; i < 4; i++) emit(e, (uint8_t)(v >> (8 * i))); }

static const unsigned dst_regs[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
/* The case being generated runs as 32-bit code: no REX, eight registers, no 64-bit operands. */
static bool g_m32;
/* Whether the host kernel runs 32-bit code (ia32 emulation can be configured out). */
static bool m32_ok = true;
static unsigned pick_dst(void) { return g_m32 ? dst_regs[rndn(7)] : dst_regs[rndn(14)]; }
static unsigned pick_src(void) { return rndn(g_m32 ? 8 : 16); }

/* Memory operand for ModRM: returns modrm low bits + emits SIB/disp after modrm via callback. */
struct memop {
    uint8_t mod, rm, sib;
    bool has_sib, rex_b, rex_x, addr32;
    int disp_size;
    int32_t disp;
    bool riprel;
    uint64_t target;
};

/* Random addresses must be unmapped in the child; under AddressSanitizer its shadow maps most
 * of the address space, so those operands are left out there. */
#if defined(__SANITIZE_ADDRESS__)
static const bool wild_ok = false;
#else
static const bool wild_ok = true;
#endif

static struct memop pick_mem(unsigned size)
{
    struct memop m = {0};
    unsigned k = rndn(wild_ok ? 96 : 90); /* 90..95: wild addresses, a few percent */
    uint64_t off = rndn((unsigned)SCRATCH_SIZE - 16);
    if (rndn(4) == 0 || (g_align && rndn(8))) off &= ~15ull; /* aligned, for SSE */
    if (rndn(32) == 0) off = SCRATCH_SIZE - rndn(16); /* near the end: page-crossing faults */
    (void)size;
    if (g_m32) {
        if (k < 50) { /* [disp32]: absolute in 32-bit code */
            m.mod = 0; m.rm = 5; m.disp_size = 4; m.disp = (int32_t)(SCRATCH_ADDR + off);
        } else if (k < 90) {
            m.mod = 1; m.rm = 4; m.has_sib = true; m.sib = 0x24; m.disp_size = 1;
            m.disp = (int32_t)rndn(256) - 128;
        } else {
            unsigned b = pick_src();
            m.mod = 2; m.rm = b & 7; m.disp_size = 4; m.disp = (int32_t)rnd();
            if ((b & 7) == 4) { m.has_sib = true; m.sib = 0x24; }
        }
        return m;
    }
    if (k < 40) {
        m.mod = 0; m.rm = 5; m.riprel = true; m.disp_size = 4;
        m.target = SCRATCH_ADDR + off;
    } else if (k < 75) {
        /* [r15 + disp] */
        int64_t d = (int64_t)(SCRATCH_ADDR + off) - (int64_t)R15_VALUE;
        m.rm = 7; m.rex_b = true;
        if (d >= -128 && d < 128) { m.mod = 1; m.disp_size = 1; }
        else { m.mod = 2; m.disp_size = 4; }
        m.disp = (int32_t)d;
        if (rndn(10) == 0) m.addr32 = true;
    } else if (k < 90) {
        /* [rsp + disp8] */
        m.mod = 1; m.rm = 4; m.has_sib = true; m.sib = 0x24; m.disp_size = 1;
        m.disp = (int32_t)rndn(256) - 128;
    } else if (k < 95) {
        /* [r15 + index*scale + disp8]: usually a wild address (fault). */
        unsigned idx = pick_src();
        if (idx == 4) idx = 0;
        m.mod = 1; m.rm = 4; m.has_sib = true; m.rex_b = true; m.rex_x = idx >= 8;
        m.sib = (uint8_t)((rndn(4) << 6) | ((idx & 7) << 3) | 7);
        m.disp_size = 1; m.disp = (int32_t)rndn(256) - 128;
    } else {
        /* A random base register: faults (#PF, or #GP when non-canonical). */
        unsigned b = pick_src();
        m.mod = 2; m.rm = b & 7; m.rex_b = b >= 8; m.disp_size = 4; m.disp = (int32_t)rnd();
        if ((b & 7) == 4) { m.has_sib = true; m.sib = 0x24; }
    }
    return m;
}

/* Emit [prefixes] [REX] opcode modrm [sib] [disp] for a reg + r/m pair. */
static void emit_modrm_insn(struct emitter *e, unsigned size, bool rex_always, uint8_t map, const uint8_t *opc, unsigned nopc,
                            unsigned reg, bool rm_is_mem, unsigned rmreg, struct memop *m, int mandatory66)
{
    if (m && rm_is_mem && m->addr32) emit(e, 0x67);
    if (size == 2 || mandatory66) emit(e, 0x66);
    uint8_t rex = 0x40;
    if (size == 8) rex |= 8;
    if (reg >= 8) rex |= 4;
    if (rm_is_mem) {
        if (m->rex_b) rex |= 1;
        if (m->rex_x) rex |= 2;
    } else if (rmreg >= 8) {
        rex |= 1;
    }
    if ((rex != 0x40 || rex_always) && !g_m32) emit(e, rex);
    if (map == 1) emit(e, 0x0f);
    for (unsigned i = 0; i < nopc; i++) emit(e, opc[i]);
    if (rm_is_mem) {
        emit(e, (uint8_t)((m->mod << 6) | ((reg & 7) << 3) | m->rm));
        if (m->has_sib) emit(e, m->sib);
        if (m->disp_size == 1) emit(e, (uint8_t)m->disp);
        else if (m->disp_size == 4) {
            if (m->riprel) { e->disp_at = (int)e->n; e->rip_target = m->target; }
            emit32(e, (uint32_t)m->disp);
        }
    } else {
        emit(e, (uint8_t)(0xc0 | ((reg & 7) << 3) | (rmreg & 7)));
    }
}

static void emit_imm(struct emitter *e, unsigned n, uint64_t v)
{
    for (unsigned i = 0; i < n; i++) emit(e, (uint8_t)(v >> (8 * i)));
}

static unsigned pick_size(uint8_t sizes)
{
    if (g_m32) {
        if (sizes & 8) sizes |= 4; /* push/pop and friends: 32-bit by default there */
        sizes &= 7;
    }
    for (;;) {
        unsigned s = 1u << rndn(4);
        if (sizes & s) return s;
    }
}

static bool gen_one(struct emitter *e, struct insn_meta *meta);

/* Instructions whose encoding means something else on hosts without the feature (lzcnt and
 * tzcnt run as bsr/bsf there): generated only when the host has them. */
static bool host_popcnt, host_lzcnt, host_tzcnt;

static void host_features(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) host_popcnt = c & (1u << 23);
    if (__get_cpuid(0x80000001, &a, &b, &c, &d)) host_lzcnt = c & (1u << 5);
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) host_tzcnt = b & (1u << 3);
}

static void add_lock(struct emitter *e)
{
    memmove(e->buf + 1, e->buf, e->n);
    e->buf[0] = 0xf0;
    e->n++;
    if (e->disp_at >= 0) e->disp_at++;
}

/* Generate one instruction; returns false to retry. meta gets flags info. */
static bool gen_one(struct emitter *e, struct insn_meta *meta)
{
    const struct gen_op *g = &ops[rndn(sizeof(ops) / sizeof(ops[0]))];
    if (g->shape == S_BRANCH) {
        struct emitter inner;
        struct insn_meta im = {0};
        unsigned k = rndn(6);
        if (k == 5) { /* call +2; jmp +1; ret */
            static const uint8_t cr[] = {0xe8, 0x02, 0, 0, 0, 0xeb, 0x01, 0xc3};
            e->n = 0;
            e->disp_at = -1;
            memcpy(e->buf, cr, sizeof(cr));
            e->n = sizeof(cr);
            *meta = (struct insn_meta){.name = "call/ret"};
            return true;
        }
        do { inner.n = 0; } while (!gen_one(&inner, &im) || inner.n > 20 || im.name == NULL || !strcmp(im.name, "branch"));
        e->n = 0;
        e->disp_at = -1;
        if (k == 0) { emit(e, (uint8_t)(0x70 + rndn(16))); meta->reads = 1; meta->name = "jcc+insn"; }
        else if (k == 1) { emit(e, 0xeb); meta->name = "jmp+insn"; }
        else if (k == 2) {
            uint8_t lop = (uint8_t)(0xe0 + rndn(3)); /* loopnz loopz loop */
            emit(e, lop);
            meta->name = "loop+insn";
            if (lop != 0xe2) meta->reads = 1;
        }
        else if (k == 3) { emit(e, 0xe3); meta->name = "jrcxz+insn"; }
        else { emit(e, 0x0f); emit(e, (uint8_t)(0x80 + rndn(16))); meta->reads = 1; meta->name = "jcc32+insn"; }
        if (k == 4) emit32(e, inner.n);
        else emit(e, (uint8_t)inner.n);
        if (inner.disp_at >= 0) { e->disp_at = (int)e->n + inner.disp_at; e->rip_target = inner.rip_target; }
        memcpy(e->buf + e->n, inner.buf, inner.n);
        e->n += inner.n;
        meta->reads |= im.reads;
        meta->undef = im.undef | im.writes; /* the inner instruction may or may not run */
        meta->writes = 0;
        return true;
    }
    if (g->shape == S_MISC) {
        e->n = 0;
        e->disp_at = -1;
        *meta = (struct insn_meta){0};
        unsigned k = rndn(8);
        if (k == 4) { /* push imm8/imm32 */
            if (rndn(2)) { emit(e, 0x6a); emit(e, (uint8_t)rnd()); }
            else { emit(e, 0x68); emit32(e, (uint32_t)rnd_value()); }
            meta->name = "push imm";
            return true;
        }
        if (k == 5) { /* mov al/ax/eax/rax, moffs and back */
            uint64_t addr = SCRATCH_ADDR + rndn((unsigned)SCRATCH_SIZE - 8);
            unsigned sz = pick_size(SZ_ALL);
            if (sz == 2) emit(e, 0x66);
            if (sz == 8) emit(e, 0x48);
            emit(e, (uint8_t)(0xa0 + (sz == 1 ? 0 : 1) + (rndn(2) ? 2 : 0)));
            emit_imm(e, g_m32 ? 4 : 8, addr);
            meta->name = "mov moffs";
            return true;
        }
        if (k == 6) { /* xlat with rbx pointing at the scratch area */
            if (g_m32) { emit(e, 0xbb); emit32(e, (uint32_t)(R15_VALUE + rndn(0x700))); }
            else { emit(e, 0x49); emit(e, 0x8d); emit(e, 0x9f); emit32(e, rndn(0x700)); }
            emit(e, 0xd7);
            meta->name = "xlat";
            return true;
        }
        if (k == 7) {
            if (!g_m32) return false;
            emit(e, rndn(2) ? 0x60 : 0x61); /* pusha / popa */
            if (rndn(2)) { memmove(e->buf + 1, e->buf, e->n); e->buf[0] = 0x66; e->n++; }
            meta->name = "pusha/popa";
            return true;
        }
        if (k == 3) { /* x87 control: fninit fnclex fnstcw fldcw fnstsw */
            struct memop m = pick_mem(2);
            uint8_t opc;
            switch (rndn(6)) {
            case 0: emit(e, 0xdb); emit(e, 0xe3); meta->name = "fninit"; return true;
            case 1: emit(e, 0xdb); emit(e, 0xe2); meta->name = "fnclex"; return true;
            case 2: emit(e, 0xdf); emit(e, 0xe0); meta->name = "fnstsw ax"; return true;
            case 3: opc = 0xd9; emit_modrm_insn(e, 4, false, 0, &opc, 1, 7, true, 0, &m, 0); meta->name = "fnstcw"; return true;
            case 4: opc = 0xdd; emit_modrm_insn(e, 4, false, 0, &opc, 1, 7, true, 0, &m, 0); meta->name = "fnstsw m"; return true;
            default:
                /* fldcw from memory holding a sane control word: mov word [mem], imm; fldcw [mem] */
                opc = 0xc7;
                emit_modrm_insn(e, 2, false, 0, &opc, 1, 0, true, 0, &m, 0);
                emit_imm(e, 2, 0x37f ^ (rndn(2) ? 0xc00 : 0x300)); /* rounding or precision bits */
                {
                    struct emitter e2;
                    e2.n = 0;
                    e2.disp_at = -1;
                    opc = 0xd9;
                    emit_modrm_insn(&e2, 4, false, 0, &opc, 1, 5, true, 0, &m, 0);
                    if (e->disp_at >= 0) return false; /* rip-relative twice: keep it simple */
                    memcpy(e->buf + e->n, e2.buf, e2.n);
                    e->n += e2.n;
                    if (e2.disp_at >= 0) return false;
                }
                meta->name = "fldcw";
                return true;
            }
        }
        if (k == 0) { /* cmpxchg8b/16b [mem] */
            struct memop m = pick_mem(16);
            if (rndn(2) && m.riprel) m.target &= ~15ull;
            uint8_t opc = 0xc7;
            if (rndn(4) == 0) emit(e, 0xf0);
            emit_modrm_insn(e, rndn(2) && !g_m32 ? 8 : 4, false, 1, &opc, 1, 1, true, 0, &m, 0);
            meta->name = "cmpxchg8b/16b";
            meta->writes = F_ZF;
            return true;
        }
        if (k == 1) { /* [lea rbp, [rsp+d]] enter n, level ... leave */
            unsigned level = rndn(3) ? 0 : rndn(4);
            if (level > 1 || rndn(2)) { /* nested levels read the old frame pointers through rbp */
                if (!g_m32) emit(e, 0x48);
                emit(e, 0x8d); emit(e, 0x6c); emit(e, 0x24); emit(e, (uint8_t)(0x40 + rndn(0x40)));
            }
            if (rndn(4) == 0 && wild_ok) emit(e, 0x66); /* 16-bit frame: rbp's upper bits stay, wild */
            emit(e, 0xc8); emit(e, (uint8_t)rndn(64)); emit(e, 0); emit(e, (uint8_t)level);
            if (rndn(2)) { emit(e, 0x48); emit(e, 0x89); emit(e, 0x45); emit(e, 0xf8); } /* mov [rbp-8], rax */
            emit(e, 0xc9);
            meta->name = "enter/leave";
            return true;
        }
        /* and r, 0x3ff; sub r, 0x200; bt* [mem], r */
        unsigned r = pick_dst();
        if (!g_m32) emit(e, (uint8_t)(0x48 | (r >= 8)));
        emit(e, 0x81); emit(e, (uint8_t)(0xe0 | (r & 7))); emit32(e, 0x3ff);
        if (!g_m32) emit(e, (uint8_t)(0x48 | (r >= 8)));
        emit(e, 0x81); emit(e, (uint8_t)(0xe8 | (r & 7))); emit32(e, 0x200);
        static const uint8_t btops[] = {0xa3, 0xab, 0xb3, 0xbb};
        uint8_t opc = btops[rndn(4)];
        struct memop m = pick_mem(8);
        if (opc != 0xa3 && rndn(4) == 0) emit(e, 0xf0);
        emit_modrm_insn(e, rndn(2) && !g_m32 ? 8 : rndn(2) ? 4 : 2, false, 1, &opc, 1, r, true, 0, &m, 0);
        meta->name = "bt mem,reg";
        meta->writes = F_ALL; /* the and/sub define all; bt leaves ZF alone */
        meta->undef = F_OF | F_SF | F_AF | F_PF;
        return true;
    }
    e->n = 0;
    e->disp_at = -1;
    meta->name = g->name;
    meta->undef = g->undef;
    meta->writes = g->writes;
    meta->reads = g->reads;
    unsigned size = g->sizes ? pick_size(g->sizes) : 4;
    bool byte_rex = size == 1 && rndn(3) == 0;
    bool mem = g->mem == 2 || (g->mem == 1 && rndn(2) == 0);
    struct memop m = {0};
    if (mem) m = pick_mem(size);
    uint8_t opc;
    switch (g->shape) {
    case S_ALU: {
        unsigned reg = (g->wr & 1) || (g->op8 == 0x86) ? pick_dst() : pick_src();
        unsigned rmr = pick_dst();
        bool dir = (g->op8 < 0x40 || g->op8 == 0x88) && rndn(2); /* reg, r/m form */
        if (dir) {
            reg = pick_dst();
            if (g->wr == 0) reg = pick_src();
        }
        if (!g->wr) rmr = pick_src();
        opc = (uint8_t)((size == 1 ? g->op8 : g->opv) + (dir ? 2 : 0));
        if (size == 1 && !byte_rex && !mem) {
            /* Without REX, 4-7 are AH..BH; never SPL. */
            if (reg >= 8) reg &= 3;
            if (rmr >= 8) rmr &= 3;
        }
        emit_modrm_insn(e, size, byte_rex, 0, &opc, 1, reg, mem, rmr, &m, 0);
        break;
    }
    case S_GRP_I: {
        opc = size == 1 ? g->op8 : g->opv;
        unsigned rmr = g->wr ? pick_dst() : pick_src();
        emit_modrm_insn(e, size, byte_rex, 0, &opc, 1, (unsigned)g->ext, mem, rmr, &m, 0);
        if (size == 1 || opc == 0x83) emit_imm(e, 1, rnd_value());
        else emit_imm(e, size == 2 ? 2 : 4, rnd_value());
        break;
    }
    case S_UNARY: {
        opc = size == 1 ? g->op8 : g->opv;
        if (!opc) return false;
        unsigned rmr = g->wr ? pick_dst() : pick_src();
        if (g->ext >= 4 && g->op8 == 0xf6 && !mem) rmr = pick_src();
        if (size == 1 && !byte_rex && !mem && rmr >= 8) rmr &= 3;
        if (opc == 0xff || opc == 0x8f) {
            if (size == 4) size = 8;
            if (!mem) return false;
        }
        emit_modrm_insn(e, size, byte_rex, 0, &opc, 1, (unsigned)g->ext, mem, rmr, &m, 0);
        if (g->op8 == 0xd2 && rndn(2)) {
            /* keep some CL shifts small and meaningful */
        }
        break;
    }
    case S_SHIFT_I: {
        unsigned rmr = g->wr ? pick_dst() : pick_src();
        if (size == 1 && !byte_rex && !mem && rmr >= 8) rmr &= 3;
        if (g->map == 1 && (g->opv == 0xa4 || g->opv == 0xac)) {
            opc = g->opv;
            emit_modrm_insn(e, size, false, 1, &opc, 1, pick_src(), mem, rmr, &m, 0);
            emit(e, (uint8_t)rndn(size == 2 ? 16 : 64));
            break;
        }
        if (g->map == 1) {
            opc = g->opv;
            emit_modrm_insn(e, size, false, 1, &opc, 1, (unsigned)g->ext, mem, rmr, &m, 0);
            emit(e, (uint8_t)rnd());
            break;
        }
        opc = size == 1 ? g->op8 : g->opv;
        emit_modrm_insn(e, size, byte_rex, 0, &opc, 1, (unsigned)g->ext, mem, rmr, &m, 0);
        emit(e, (uint8_t)(rndn(4) ? rndn(size * 8 + 2) : rnd()));
        break;
    }
    case S_REG_RM: {
        opc = g->opv;
        if (!strcmp(g->name, "cmovcc")) opc = (uint8_t)(0x40 + rndn(16));
        unsigned reg = pick_dst(), rmr = pick_src();
        if (!strcmp(g->name, "movsxd")) {
            if (g_m32) return false; /* arpl there */
            size = 8;
        }
        if ((!strcmp(g->name, "popcnt") && !host_popcnt) || (!strcmp(g->name, "tzcnt") && !host_tzcnt) ||
            (!strcmp(g->name, "lzcnt") && !host_lzcnt))
            return false;
        if (!strcmp(g->name, "popcnt") || !strcmp(g->name, "tzcnt") || !strcmp(g->name, "lzcnt")) emit(e, 0xf3);
        if (!mem && opc == 0x8d) return false;
        if (opc == 0x69 && rndn(2)) opc = 0x6b;
        emit_modrm_insn(e, size, false, g->map, &opc, 1, reg, mem, rmr, &m, 0);
        if (opc == 0x6b) emit_imm(e, 1, rnd_value());
        if (opc == 0x69) emit_imm(e, size == 2 ? 2 : 4, rnd_value());
        break;
    }
    case S_RM_REG: {
        opc = size == 1 ? g->op8 : g->opv;
        if (!strcmp(g->name, "setcc")) opc = (uint8_t)(0x90 + rndn(16));
        unsigned reg = (g->wr & 1) ? pick_dst() : pick_src(), rmr = g->wr ? pick_dst() : pick_src();
        if (size == 1 && !byte_rex && !mem) {
            if (rmr >= 8) rmr &= 3;
            if (reg >= 8) reg &= 3;
        }
        if (!strcmp(g->name, "setcc") && rndn(2)) byte_rex = true;
        if (mem && (opc == 0xa3 || opc == 0xab || opc == 0xb3 || opc == 0xbb)) {
            /* Register bit offsets reach far: keep the offset register small-ish via a mask first. */
            return false;
        }
        if (opc == 0xa5 || opc == 0xad) {
            /* shld/shrd by CL: 16-bit counts above 16 are undefined */
            if (size == 2) return false;
        }
        emit_modrm_insn(e, size, byte_rex, 1, &opc, 1, reg, mem, rmr, &m, 0);
        break;
    }
    case S_OPREG: {
        unsigned r = pick_dst();
        if (g->opv == 0x50) r = pick_src();
        if (size == 2) emit(e, 0x66);
        uint8_t rex = 0x40 | (size == 8 && g->opv != 0x50 && g->opv != 0x58 ? 8 : 0) | (r >= 8 ? 1 : 0);
        if (size == 1 && !byte_rex && r >= 8) r &= 3;
        if (g_m32 && rndn(6) == 0 && size != 1) { /* one-byte inc/dec (REX prefixes in 64-bit mode) */
            emit(e, (uint8_t)((rndn(2) ? 0x40 : 0x48) + (r & 7)));
            meta->name = "inc/dec r32";
            meta->undef = 0;
            meta->writes = F_ALL & ~F_CF;
            meta->reads = 0;
            return true;
        }
        if ((rex != 0x40 || byte_rex) && !g_m32) emit(e, rex);
        if (g->map == 1) emit(e, 0x0f);
        emit(e, (uint8_t)((size == 1 ? g->op8 : g->opv) + (r & 7)));
        if (g->opv == 0xb8) emit_imm(e, size == 8 ? 8 : size == 1 ? 1 : size, rnd_value());
        break;
    }
    case S_BRANCH: case S_MISC: return false;
    case S_NONE: {
        static const struct { uint8_t b[3]; uint8_t n; const char *name; uint16_t undef, writes; uint8_t reads; } nn[] = {
            {{0x98}, 1, "cwde", 0, 0, 0}, {{0x48, 0x98}, 2, "cdqe", 0, 0, 0}, {{0x66, 0x98}, 2, "cbw", 0, 0, 0},
            {{0x99}, 1, "cdq", 0, 0, 0}, {{0x48, 0x99}, 2, "cqo", 0, 0, 0}, {{0x66, 0x99}, 2, "cwd", 0, 0, 0},
            {{0xf8}, 1, "clc", 0, F_CF, 0}, {{0xf9}, 1, "stc", 0, F_CF, 0}, {{0xf5}, 1, "cmc", 0, 0, 1},
            {{0x9f}, 1, "lahf", 0, 0, 1}, {{0x9e}, 1, "sahf", 0, F_ALL & ~F_OF, 0},
            {{0x9c, 0x9d}, 2, "pushf;popf", 0, 0, 1}, {{0x90}, 1, "nop", 0, 0, 0},
            {{0x0f, 0x1f, 0x00}, 3, "nopl", 0, 0, 0}, {{0xf3, 0x90}, 2, "pause", 0, 0, 0},
            {{0xfc}, 1, "cld", 0, 0, 0}, {{0xfd}, 1, "std", 0, 0, 0}, {{0x0f, 0x0b}, 2, "ud2", 0, 0, 0},
            {{0xcc}, 1, "int3", 0, 0, 0}, {{0xf4}, 1, "hlt", 0, 0, 0}, {{0xfa}, 1, "cli", 0, 0, 0},
            {{0x0f, 0xae, 0xf0}, 3, "mfence", 0, 0, 0}, {{0x0f, 0xae, 0xe8}, 3, "lfence", 0, 0, 0},
            {{0xd7}, 1, "xlat", 0, 0, 0}, {{0xc9}, 1, "leave", 0, 0, 0}, {{0xe4, 0x40}, 2, "in", 0, 0, 0},
            {{0x0f, 0x01, 0xf8}, 3, "swapgs", 0, 0, 0}, {{0x0f, 0x20, 0xc0}, 3, "movcr", 0, 0, 0},
        };
        unsigned k = rndn(sizeof(nn) / sizeof(nn[0]));
        if (!strcmp(nn[k].name, "leave") || !strcmp(nn[k].name, "xlat")) return false; /* rbp/rbx are random */
        if (g_m32 && nn[k].b[0] == 0x48) return false;
        for (unsigned i = 0; i < nn[k].n; i++) emit(e, nn[k].b[i]);
        meta->name = nn[k].name;
        meta->undef = nn[k].undef;
        meta->writes = nn[k].writes;
        meta->reads = nn[k].reads;
        break;
    }
    case S_STRING: {
        /* Point rsi/rdi into the scratch area first, and maybe bound rcx. */
        static const uint8_t sops[] = {0xa4, 0xa6, 0xaa, 0xac, 0xae};
        uint8_t sop = sops[rndn(5)];
        unsigned rep = rndn(3); /* none, f3, f2 */
        int32_t so = (int32_t)rndn(0x1800) - 0x800, dof = (int32_t)rndn(0x1800) - 0x800;
        /* lea rsi, [r15+so]; lea rdi, [r15+dof] */
        if (g_m32) {
            emit(e, 0xbe); emit32(e, (uint32_t)(R15_VALUE + so));
            emit(e, 0xbf); emit32(e, (uint32_t)(R15_VALUE + dof));
        } else {
            emit(e, 0x49); emit(e, 0x8d); emit(e, 0xb7); emit32(e, (uint32_t)so);
            emit(e, 0x49); emit(e, 0x8d); emit(e, 0xbf); emit32(e, (uint32_t)dof);
        }
        if (rndn(8)) { emit(e, 0xb9); emit32(e, rndn(40)); } /* mov ecx, n; else rcx as it is (runs to a fault) */
        if (rndn(4) == 0) emit(e, 0x67); /* 32-bit (or, in 32-bit code, 16-bit) addresses */
        if (size == 2) emit(e, 0x66);
        if (rep == 1) emit(e, 0xf3);
        if (rep == 2) emit(e, 0xf2);
        if (size == 8 && !g_m32) emit(e, 0x48);
        emit(e, (uint8_t)(sop + (size == 1 ? 0 : 1)));
        meta->name = "string";
        bool cmp = sop == 0xa6 || sop == 0xae;
        meta->writes = 0;
        meta->undef = 0;
        if (cmp) meta->undef = 0; /* flags defined when an iteration ran; unchanged otherwise */
        break;
    }
    case S_SSE: case S_SSE_I: {
        uint8_t op = sse_ops[rndn(sizeof(sse_ops))];
        if (g->shape == S_SSE_I) {
            static const uint8_t iops[] = {0x70, 0xc6, 0xc4, 0xc5};
            op = iops[rndn(4)];
        }
        unsigned reg = rndn(g_m32 ? 8 : 16), rmr = rndn(g_m32 ? 8 : 16);
        int pfx66 = 1;
        bool rexw = false;
        if (op == 0x7e || op == 0x6e) {
            rexw = rndn(2);
            if (!mem) rmr = op == 0x7e ? pick_dst() : pick_src();
        }
        if (op == 0xd7) { if (mem) return false; reg = pick_dst(); }
        if ((op == 0x13 || op == 0x17) && !mem) return false;
        if ((op == 0x12 || op == 0x16) && !mem) return false;
        if (op == 0x6f || op == 0x7f) { if (rndn(2)) { emit(e, 0xf3); pfx66 = 0; } }
        if (op == 0x10 || op == 0x11) {
            unsigned p = rndn(4);
            if (p == 1) { pfx66 = 1; }
            else { pfx66 = 0; if (p == 2) emit(e, 0xf3); if (p == 3) emit(e, 0xf2); }
        }
        if (g->shape == S_SSE_I) {
            if (op == 0xc5) { if (mem) return false; reg = pick_dst(); }
            if (op == 0xc4 && !mem) rmr = pick_src();
            if (op == 0x70 && rndn(2)) { emit(e, rndn(2) ? 0xf3 : 0xf2); pfx66 = 0; }
        }
        if (pfx66) emit(e, 0x66);
        uint8_t rex = 0x40 | (rexw ? 8 : 0) | (reg >= 8 ? 4 : 0);
        if (mem) rex |= (m.rex_b ? 1 : 0) | (m.rex_x ? 2 : 0);
        else if (rmr >= 8) rex |= 1;
        if (m.addr32 && mem) return false;
        if (g_m32 && (rex & 8)) return false;
        if (rex != 0x40 && !g_m32) emit(e, rex);
        emit(e, 0x0f);
        emit(e, op);
        if (mem) {
            emit(e, (uint8_t)((m.mod << 6) | ((reg & 7) << 3) | m.rm));
            if (m.has_sib) emit(e, m.sib);
            if (m.disp_size == 1) emit(e, (uint8_t)m.disp);
            else if (m.disp_size == 4) {
                if (m.riprel) { e->disp_at = (int)e->n; e->rip_target = m.target; }
                emit32(e, (uint32_t)m.disp);
            }
        } else {
            emit(e, (uint8_t)(0xc0 | ((reg & 7) << 3) | (rmr & 7)));
        }
        if (g->shape == S_SSE_I) emit(e, (uint8_t)rnd());
        meta->name = "sse";
        break;
    }
    case S_SSEFP: {
        unsigned k = rndn(sizeof(fp_ops) / sizeof(fp_ops[0])), pfx;
        do { pfx = rndn(4); } while (!(fp_ops[k].pfx & (1u << pfx)));
        unsigned kind = fp_ops[k].kind;
        uint8_t op = fp_ops[k].op;
        meta->name = fp_ops[k].name;
        if (kind == K_LDMX) {
            g_align = false;
            m = pick_mem(4);
            opc = 0xae;
            if (rndn(2)) { /* stmxcsr */
                emit_modrm_insn(e, 4, false, 1, &opc, 1, 3, true, 0, &m, 0);
                meta->name = "stmxcsr";
                break;
            }
            /* mov dword [mem], imm32 (a random MXCSR, sometimes with reserved bits: #GP); ldmxcsr [mem] */
            uint8_t mov = 0xc7;
            emit_modrm_insn(e, 4, false, 0, &mov, 1, 0, true, 0, &m, 0);
            emit32(e, rndn(16) ? rnd_mxcsr() : (uint32_t)rnd() & ~0x20000u); /* bit 17: AMD's MM */
            if (e->disp_at >= 0) return false;
            struct emitter e2 = {.n = 0, .disp_at = -1};
            emit_modrm_insn(&e2, 4, false, 1, &opc, 1, 2, true, 0, &m, 0);
            memcpy(e->buf + e->n, e2.buf, e2.n);
            e->n += e2.n;
            meta->name = "ldmxcsr";
            break;
        }
        bool packed = pfx < 2 && op != 0x12 && op != 0x16 && op != 0x2e && op != 0x2f && op != 0x2a &&
                      op != 0x2c && op != 0x2d && !(op == 0x5a && pfx == 0);
        if (kind == K_GXR || kind == K_XXR) mem = false;
        if (kind == K_XX && (op == 0x12 || op == 0x16)) mem = true;
        if (mem) {
            g_align = packed;
            m = pick_mem(16);
            g_align = false;
        }
        if (m.addr32 && mem) return false;
        unsigned reg = rndn(g_m32 ? 8 : 16), rmr = rndn(g_m32 ? 8 : 16);
        bool rexw = !g_m32 && rndn(8) == 0;
        if (kind == K_XG) { rexw = !g_m32 && rndn(2); if (!mem) rmr = pick_src(); }
        if (kind == K_GX || kind == K_GXR) { rexw = !g_m32 && rndn(2); reg = pick_dst(); }
        if (kind == K_COMI) meta->writes = F_ALL;
        static const uint8_t pfxb[4] = {0, 0x66, 0xf2, 0xf3};
        if (pfx) emit(e, pfxb[pfx]);
        uint8_t rex = 0x40 | (rexw ? 8 : 0) | (reg >= 8 ? 4 : 0);
        if (mem) rex |= (m.rex_b ? 1 : 0) | (m.rex_x ? 2 : 0);
        else if (rmr >= 8) rex |= 1;
        if (rex != 0x40 && !g_m32) emit(e, rex);
        emit(e, 0x0f);
        emit(e, op);
        if (mem) {
            emit(e, (uint8_t)((m.mod << 6) | ((reg & 7) << 3) | m.rm));
            if (m.has_sib) emit(e, m.sib);
            if (m.disp_size == 1) emit(e, (uint8_t)m.disp);
            else if (m.disp_size == 4) {
                if (m.riprel) { e->disp_at = (int)e->n; e->rip_target = m.target; }
                emit32(e, (uint32_t)m.disp);
            }
        } else {
            emit(e, (uint8_t)(0xc0 | ((reg & 7) << 3) | (rmr & 7)));
        }
        if (kind == K_XXI) emit(e, (uint8_t)(rndn(4) ? rndn(8) : rnd()));
        break;
    }
    case S_X87: {
        if (rndn(6) == 0) {
            /* fld m32 (so the instruction and data pointers are the case's own, not whatever
             * the host kernel left there), then fnstenv/fnsave, maybe fldenv/frstor back. */
            static const uint8_t d9 = 0xd9, dd = 0xdd;
            struct memop m1 = pick_mem(4), m2 = pick_mem(108);
            bool whole = rndn(2), back = rndn(2), p16 = rndn(4) == 0;
            struct emitter parts[3];
            for (int k = 0; k < 3; k++) { parts[k].n = 0; parts[k].disp_at = -1; }
            emit_modrm_insn(&parts[0], 4, false, 0, &d9, 1, 0, true, 0, &m1, 0);
            emit_modrm_insn(&parts[1], p16 ? 2 : 4, false, 0, whole ? &dd : &d9, 1, 6, true, 0, &m2, 0);
            emit_modrm_insn(&parts[2], p16 ? 2 : 4, false, 0, whole ? &dd : &d9, 1, 4, true, 0, &m2, 0);
            int nrip = 0;
            for (int k = 0; k < (back ? 3 : 2); k++) {
                if (parts[k].disp_at >= 0) {
                    if (nrip++) return false; /* one rip-relative operand per emitted unit */
                    e->disp_at = (int)e->n + parts[k].disp_at;
                    e->rip_target = parts[k].rip_target;
                }
                memcpy(e->buf + e->n, parts[k].buf, parts[k].n);
                e->n += parts[k].n;
            }
            meta->name = whole ? "fld;fnsave;frstor" : "fld;fnstenv;fldenv";
            break;
        }
        uint8_t op = (uint8_t)(0xd8 + rndn(8));
        unsigned r = rndn(8);
        if ((op == 0xd9 || op == 0xdd) && (r == 4 || r == 6) && mem) return false; /* above */
        if (op == 0xd9 && r == 5 && mem) return false; /* fldcw: see the "misc" generator */
        if (mem) {
            emit_modrm_insn(e, 4, false, 0, &op, 1, r, true, 0, &m, 0);
        } else {
            emit(e, op);
            emit(e, (uint8_t)(0xc0 | (r << 3) | rndn(8)));
        }
        struct emu_insn di;
        if (emu_decode(e->buf, e->n, g_m32 ? EMU_MODE_PROT32 : EMU_MODE_LONG64, &di)) return false;
        meta->name = "x87";
        if (!mem && (op == 0xdb || op == 0xdf) && (r == 5 || r == 6)) { meta->writes = F_ALL; meta->name = "fcomi"; }
        if (!mem && (op == 0xda || op == 0xdb) && r <= 3) { meta->reads = 1; meta->name = "fcmov"; }
        break;
    }
    case S_SSE_SHIFT_I: {
        static const struct { uint8_t op, ext; } sh[] = {{0x71, 2}, {0x71, 4}, {0x71, 6}, {0x72, 2}, {0x72, 4}, {0x72, 6},
                                                        {0x73, 2}, {0x73, 3}, {0x73, 6}, {0x73, 7}};
        unsigned k = rndn(10), rmr = rndn(g_m32 ? 8 : 16);
        emit(e, 0x66);
        if (rmr >= 8) emit(e, 0x41);
        emit(e, 0x0f);
        emit(e, sh[k].op);
        emit(e, (uint8_t)(0xc0 | (sh[k].ext << 3) | (rmr & 7)));
        emit(e, (uint8_t)(rndn(3) ? rndn(20) : rnd()));
        meta->name = "sseshift";
        break;
    }
    }
    if ((g->shape == S_ALU || g->shape == S_GRP_I || g->shape == S_UNARY || g->shape == S_RM_REG ||
         g->shape == S_SHIFT_I) && rndn(40) == 0)
        add_lock(e); /* valid with a memory destination of a lockable op, else #UD */
    if (mem && rndn(16) == 0) {
        /* Segment overrides: ignored in 64-bit mode; flat data segments in 32-bit code. */
        static const uint8_t segp[] = {0x26, 0x2e, 0x36, 0x3e};
        uint8_t p = segp[rndn(4)];
        if (g_m32 && p == 0x2e) p = 0x3e; /* CS is not writable there; types are not modelled */
        memmove(e->buf + 1, e->buf, e->n);
        e->buf[0] = p;
        e->n++;
        if (e->disp_at >= 0) e->disp_at++;
    }
    return true;
}

static void gen_case(struct tcase *c, uint64_t seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 12345;
    memset(c, 0, sizeof(*c));
    c->m32 = g_m32 = rndn(4) == 0 && m32_ok;
    for (int i = 0; i < 16; i++) c->in.r[i] = rnd_value();
    c->in.r[4] = RSP_VALUE;
    c->in.r[15] = R15_VALUE;
    c->in.rflags = (rnd() & STATUS_FLAGS) | (rndn(4) == 0 ? DF_FLAG : 0) | 0x202;
    for (int i = 0; i < 16; i++) {
        unsigned kind = rndn(5);
        if (kind > 2) kind = rndn(2);
        c->in.xmm[i].q[0] = rnd_lane(kind);
        c->in.xmm[i].q[1] = rnd_lane(kind);
    }
    c->in.mxcsr = rnd_mxcsr();
    /* x87: rounding and precision control (exceptions masked), a stack of random depth. */
    static const uint16_t pcs[] = {0x000, 0x200, 0x300};
    c->in.fcw = (uint16_t)(0x7f | (rndn(4) << 10) | pcs[rndn(3)]);
    unsigned top = rndn(8), depth = rndn(9);
    c->in.fsw = (uint16_t)((top << 11) | (rndn(2) ? (rnd() & 0x4700) : 0) | (rndn(4) ? 0 : (rnd() & 0x7f)));
    c->in.fsw &= (uint16_t)~0x80; /* ES only with an unmasked exception */
    for (unsigned k = 0; k < depth; k++) c->in.ftw |= (uint8_t)(1u << ((top + k) & 7));
    if (rndn(8) == 0) c->in.ftw = (uint8_t)rnd();
    for (int i = 0; i < 8; i++) rnd_f80(c->in.st[i]);
    c->mem_seed = rnd();
    c->in.rip = CODE_ADDR;
    unsigned n = 1 + rndn(MAX_INSNS - 4);
    uint16_t taint = 0;
    for (unsigned i = 0; i < n && c->ninsns < MAX_INSNS - 1; i++) {
        struct emitter e;
        struct insn_meta meta = {0};
        if (!gen_one(&e, &meta)) { i--; continue; }
        if (meta.reads && taint) {
            /* A flag reader must not see undefined flags: define them all first (cmp rax, rbx). */
            struct insn_meta fix = {.off = (uint8_t)c->code_len, .len = 3, .writes = F_ALL, .name = "cmp(fix)"};
            if (c->ninsns >= MAX_INSNS - 1) break;
            if (c->m32) {
                memcpy(c->code + c->code_len, "\x39\xd8", 2);
                fix.len = 2;
            } else {
                memcpy(c->code + c->code_len, "\x48\x39\xd8", 3);
            }
            c->code_len += fix.len;
            c->meta[c->ninsns++] = fix;
            taint = 0;
        }
        if (c->code_len + e.n + 1 > MAX_CODE) break;
        if (e.disp_at >= 0) {
            uint64_t next = CODE_ADDR + c->code_len + e.n;
            int32_t d = (int32_t)(int64_t)(e.rip_target - next);
            memcpy(e.buf + e.disp_at, &d, 4);
        }
        meta.off = (uint8_t)c->code_len;
        meta.len = (uint8_t)e.n;
        memcpy(c->code + c->code_len, e.buf, e.n);
        c->code_len += e.n;
        c->meta[c->ninsns++] = meta;
        taint = (uint16_t)((taint & ~meta.writes) | meta.undef);
    }
}

/* ---------------- native execution ---------------- */

struct shared {
    unsigned n;
    struct tcase cases[BATCH];
    struct result res[BATCH];
};

static struct shared *sh;
static int child_cur;
/* The code page is mapped read+execute at CODE_ADDR and writable here: a string instruction
 * running over its own code would otherwise depend on when host interrupts make it re-fetch. */
static uint8_t *code_alias;
static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static void child_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ucv;
    greg_t *g = uc->uc_mcontext.gregs;
    struct _libc_fpstate *fp = uc->uc_mcontext.fpregs;
    if (child_cur >= 0) {
        struct result *r = &sh->res[child_cur];
        for (int i = 0; i < 16; i++) r->out.r[i] = (uint64_t)g[greg_of[i]];
        r->out.rip = (uint64_t)g[REG_RIP];
        r->out.rflags = (uint64_t)g[REG_EFL];
        r->trapno = (uint64_t)g[REG_TRAPNO];
        r->err = (uint64_t)g[REG_ERR];
        r->cr2 = (uint64_t)g[REG_CR2];
        for (int i = 0; i < 16; i++) memcpy(&r->out.xmm[i], &fp->_xmm[i], 16);
        r->out.mxcsr = fp->mxcsr;
        r->out.fcw = fp->cwd;
        r->out.fsw = fp->swd;
        r->out.ftw = (uint8_t)fp->ftw;
        for (int i = 0; i < 8; i++) memcpy(r->out.st[i], &fp->_st[i], 10);
        memcpy(r->scratch, (void *)SCRATCH_ADDR, SCRATCH_SIZE);
        r->status = 0;
    }
    child_cur++;
    if (child_cur >= (int)sh->n) _exit(0);
    struct tcase *c = &sh->cases[child_cur];
    memset(code_alias, 0, CODE_SIZE); /* string ops may read the code page: no stale bytes */
    memcpy(code_alias, c->code, c->code_len);
    code_alias[c->code_len] = 0xf4; /* hlt: #GP in user mode ends the case */
    fill_scratch((uint8_t *)SCRATCH_ADDR, c->mem_seed);
    for (int i = 0; i < 16; i++) g[greg_of[i]] = (greg_t)c->in.r[i];
    g[REG_RIP] = (greg_t)CODE_ADDR;
    /* 0x23 is Linux's 32-bit user code segment: sigreturn drops into compatibility mode. */
    g[REG_CSGSFS] = (g[REG_CSGSFS] & ~(greg_t)0xffff) | (c->m32 ? 0x23 : 0x33);
    g[REG_EFL] = (greg_t)((g[REG_EFL] & ~(greg_t)(STATUS_FLAGS | DF_FLAG | 0x100 | 0x40000)) | (greg_t)c->in.rflags);
    for (int i = 0; i < 16; i++) memcpy(&fp->_xmm[i], &c->in.xmm[i], 16);
    fp->mxcsr = c->in.mxcsr;
    fp->rip = fp->rdp = 0;
    fp->fop = 0;
    fp->cwd = c->in.fcw;
    fp->swd = c->in.fsw;
    fp->ftw = c->in.ftw;
    for (int i = 0; i < 8; i++) memcpy(&fp->_st[i], c->in.st[i], 10);
}

static int run_native(struct shared *s)
{
    for (unsigned i = 0; i < s->n; i++) s->res[i].status = -1;
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        int fd = memfd_create("emu_difftest_code", 0);
        if (fd < 0 || ftruncate(fd, CODE_SIZE)) _exit(3);
        void *code = mmap((void *)CODE_ADDR, CODE_SIZE, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
        code_alias = mmap(NULL, CODE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (code_alias == MAP_FAILED) _exit(3);
        void *scr = mmap((void *)SCRATCH_ADDR, SCRATCH_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (code != (void *)CODE_ADDR || scr != (void *)SCRATCH_ADDR) _exit(3);
        static uint8_t altstack[65536];
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
        sigaltstack(&ss, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = child_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGUSR1};
        for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaction(sigs[i], &sa, NULL);
        alarm(30);
        child_cur = -1;
        /* 64-bit processes run with null DS/ES; 32-bit code needs flat data segments there. */
        __asm__ volatile("mov %0, %%ds\n\tmov %0, %%es" : : "r"((uint16_t)0x2b));
        raise(SIGUSR1);
        _exit(4); /* not reached */
    }
    int st;
    if (waitpid(pid, &st, 0) < 0) return -errno;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3) return -EADDRINUSE;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return -EIO;
    return 0;
}

/* ---------------- emulator execution ---------------- */

static void run_emu(const struct tcase *c, struct result *r)
{
    static struct emu_cpu cpu;
    static uint8_t code[CODE_SIZE];
    static uint8_t scratch[SCRATCH_SIZE];
    memset(code, 0, sizeof(code));
    memcpy(code, c->code, c->code_len);
    code[c->code_len] = 0xf4;
    fill_scratch(scratch, c->mem_seed);
    static bool inited;
    if (!inited) {
        emu_cpu_init(&cpu);
        emu_cpu_add_ram(&cpu, CODE_ADDR, CODE_SIZE, code);
        emu_cpu_add_ram(&cpu, SCRATCH_ADDR, SCRATCH_SIZE, scratch);
        for (unsigned i = 0; i < cpu.nram; i++) {
            if (cpu.ram[i].gpa == SCRATCH_ADDR) cpu.ram[i].noexec = true;
            if (cpu.ram[i].gpa == CODE_ADDR) cpu.ram[i].readonly = true;
        }
        inited = true;
    } else {
        emu_cpu_reset(&cpu); /* keeps the RAM list; drops decoded blocks of the last case */
    }
    emu_cpu_set_flat64(&cpu);
    cpu.flat_unmapped_faults = true;
    cpu.exit_on_exception = true;
    if (c->m32)
        cpu.seg[EMU_CS] = (struct emu_seg){.sel = 0x23, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .db = 1, .g = 1, .dpl = 3};
    memcpy(cpu.r, c->in.r, sizeof(cpu.r));
    cpu.rip = c->in.rip;

    emu_set_rflags(&cpu, c->in.rflags);
    memcpy(cpu.xmm, c->in.xmm, sizeof(cpu.xmm));
    cpu.mxcsr = c->in.mxcsr;
    cpu.seg[EMU_DS].sel = cpu.seg[EMU_ES].sel = 0x2b; /* what the child loads (x87 FDS shows it) */
    cpu.fcw = c->in.fcw;
    cpu.fsw = c->in.fsw;
    cpu.ftw = c->in.ftw;
    memcpy(cpu.x87_st, c->in.st, sizeof(cpu.x87_st));
    enum emu_stop st = emu_run(&cpu, 1000000);
    memcpy(r->out.r, cpu.r, sizeof(cpu.r));
    r->out.rip = cpu.rip;
    r->out.rflags = emu_get_rflags(&cpu);
    memcpy(r->out.xmm, cpu.xmm, sizeof(cpu.xmm));
    r->out.mxcsr = cpu.mxcsr;
    r->out.fcw = cpu.fcw;
    r->out.fsw = cpu.fsw;
    r->out.ftw = cpu.ftw;
    memcpy(r->out.st, cpu.x87_st, sizeof(r->out.st));
    memcpy(r->scratch, scratch, SCRATCH_SIZE);
    r->trapno = st == EMU_STOP_EXCEPTION ? cpu.exc_vector : 255;
    r->err = cpu.exc_error;
    r->cr2 = cpu.exc_addr;
    r->status = 0;
}

/* ---------------- comparison ---------------- */

static const char *regname[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                  "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};

/* Undefined-flag mask in effect at a given rip (flags before the instruction there). */
static int taint_at(const struct tcase *c, uint64_t rip, uint16_t *taint)
{
    uint16_t t = 0;
    for (unsigned i = 0; i < c->ninsns; i++) {
        uint64_t start = CODE_ADDR + c->meta[i].off;
        if (rip >= start && rip < start + c->meta[i].len) { *taint = t; return 0; }
        t = (uint16_t)((t & ~c->meta[i].writes) | c->meta[i].undef);
    }
    if (rip == CODE_ADDR + c->code_len) { *taint = t; return 0; }
    /* Past an int3, or inside an instruction: take the flags after the last one that started before. */
    *taint = t;
    return -1;
}

/* 0 if equal; otherwise prints (when verbose) and returns 1. */
static int compare(const struct tcase *c, const struct result *nat, const struct result *emu, bool verbose, FILE *out)
{
    int bad = 0;
#define DIFF(...) do { bad = 1; if (verbose) fprintf(out, __VA_ARGS__); } while (0)
    if (nat->trapno != emu->trapno) DIFF("  exception: host %" PRIu64 ", emu %" PRIu64 "\n", nat->trapno, emu->trapno);
    if (nat->out.rip != emu->out.rip) DIFF("  rip: host %#" PRIx64 ", emu %#" PRIx64 "\n", nat->out.rip, emu->out.rip);
    if (nat->trapno == 14 && nat->trapno == emu->trapno && nat->cr2 != emu->cr2)
        DIFF("  #PF address: host %#" PRIx64 ", emu %#" PRIx64 "\n", nat->cr2, emu->cr2);
    /* After 32-bit code the upper halves of the first eight registers are not architectural. */
    for (int i = 0; i < 16; i++) {
        uint64_t m = c->m32 && i < 8 ? 0xffffffffull : ~0ull;
        if ((nat->out.r[i] & m) != (emu->out.r[i] & m))
            DIFF("  %s: host %#" PRIx64 ", emu %#" PRIx64 "\n", regname[i], nat->out.r[i], emu->out.r[i]);
    }
    uint16_t taint = 0;
    taint_at(c, nat->out.rip, &taint);
    uint64_t mask = (STATUS_FLAGS | DF_FLAG) & ~(uint64_t)taint;
    if ((nat->out.rflags & mask) != (emu->out.rflags & mask))
        DIFF("  rflags: host %#" PRIx64 ", emu %#" PRIx64 " (compared bits %#" PRIx64 ")\n", nat->out.rflags, emu->out.rflags, mask);
    for (int i = 0; i < 16; i++)
        if (memcmp(&nat->out.xmm[i], &emu->out.xmm[i], 16))
            DIFF("  xmm%d: host %016" PRIx64 "%016" PRIx64 ", emu %016" PRIx64 "%016" PRIx64 "\n", i, nat->out.xmm[i].q[1],
                 nat->out.xmm[i].q[0], emu->out.xmm[i].q[1], emu->out.xmm[i].q[0]);
    if (nat->out.mxcsr != emu->out.mxcsr) DIFF("  mxcsr: host %#x, emu %#x\n", nat->out.mxcsr, emu->out.mxcsr);
    if (nat->out.fcw != emu->out.fcw || nat->out.fsw != emu->out.fsw || nat->out.ftw != emu->out.ftw)
        DIFF("  x87 fcw/fsw/ftw: host %#x/%#x/%#x, emu %#x/%#x/%#x\n", nat->out.fcw, nat->out.fsw, nat->out.ftw,
             emu->out.fcw, emu->out.fsw, emu->out.ftw);
    for (int i = 0; i < 8; i++)
        if (memcmp(nat->out.st[i], emu->out.st[i], 10)) {
            uint64_t hm, em;
            uint16_t he, ee;
            memcpy(&hm, nat->out.st[i], 8); memcpy(&he, nat->out.st[i] + 8, 2);
            memcpy(&em, emu->out.st[i], 8); memcpy(&ee, emu->out.st[i] + 8, 2);
            DIFF("  st%d: host %04x:%016" PRIx64 ", emu %04x:%016" PRIx64 "\n", i, he, hm, ee, em);
        }
    for (unsigned i = 0; i < SCRATCH_SIZE; i++)
        if (nat->scratch[i] != emu->scratch[i]) {
            DIFF("  memory at %#" PRIx64 ": host %02x, emu %02x\n", (uint64_t)(SCRATCH_ADDR + i), nat->scratch[i], emu->scratch[i]);
            break;
        }
    return bad;
#undef DIFF
}

static bool reads_tainted(const struct tcase *c)
{
    uint16_t t = 0;
    for (unsigned i = 0; i < c->ninsns; i++) {
        if (c->meta[i].reads && t) return true;
        t = (uint16_t)((t & ~c->meta[i].writes) | c->meta[i].undef);
    }
    return false;
}

/* Rebuild a case from a subset of its instructions (rip-relative displacements are re-aimed). */
static bool case_without(const struct tcase *src, unsigned drop, struct tcase *dst)
{
    *dst = *src;
    dst->ninsns = 0;
    dst->code_len = 0;
    for (unsigned i = 0; i < src->ninsns; i++) {
        if (i == drop) continue;
        struct insn_meta m = src->meta[i];
        uint8_t bytes[32];
        memcpy(bytes, src->code + m.off, m.len);
        /* Re-aim rip-relative operands: decode to find them. */
        struct emu_insn in;
        if (emu_decode(bytes, m.len, src->m32 ? EMU_MODE_PROT32 : EMU_MODE_LONG64, &in) == 0 && in.rip_rel) {
            uint64_t old_next = CODE_ADDR + m.off + m.len, target = old_next + (uint64_t)in.disp;
            uint64_t new_next = CODE_ADDR + dst->code_len + m.len;
            int32_t d = (int32_t)(int64_t)(target - new_next);
            /* disp32 sits right before the immediate bytes; find it by matching the old value. */
            for (int k = (int)m.len - 4; k >= 0; k--) {
                int32_t v;
                memcpy(&v, bytes + k, 4);
                if (v == (int32_t)in.disp) { memcpy(bytes + k, &d, 4); break; }
            }
        }
        m.off = (uint8_t)dst->code_len;
        memcpy(dst->code + dst->code_len, bytes, m.len);
        dst->code_len += m.len;
        dst->meta[dst->ninsns++] = m;
    }
    return !reads_tainted(dst);
}

static bool still_fails(const struct tcase *c)
{
    sh->n = 1;
    sh->cases[0] = *c;
    if (run_native(sh)) return false;
    struct result *e = malloc(sizeof(*e));
    run_emu(c, e);
    int bad = compare(c, &sh->res[0], e, false, stdout);
    free(e);
    return bad;
}

static void report(const struct tcase *orig, uint64_t seed)
{
    struct tcase cur = *orig, t;
    bool progress = true;
    while (progress) {
        progress = false;
        for (unsigned i = 0; i < cur.ninsns && cur.ninsns > 1; i++) {
            if (!case_without(&cur, i, &t)) continue;
            if (still_fails(&t)) {
                cur = t;
                progress = true;
                i--;
            }
        }
    }
    printf("MISMATCH (case seed %" PRIu64 ", %s code), minimal reproducer:\n", seed, cur.m32 ? "32-bit" : "64-bit");
    printf("  initial state:");
    for (int i = 0; i < 16; i++) printf("%s %s=%#" PRIx64, i % 4 ? "" : "\n   ", regname[i], cur.in.r[i]);
    printf("\n    rflags=%#" PRIx64 " scratch seed=%#" PRIx64 " mxcsr=%#x\n", cur.in.rflags, cur.mem_seed, cur.in.mxcsr);
    for (int i = 0; i < 16; i++)
        printf("%s xmm%d=%016" PRIx64 "%016" PRIx64, i % 2 ? "" : "\n   ", i, cur.in.xmm[i].q[1], cur.in.xmm[i].q[0]);
    printf("\n    fcw=%#x fsw=%#x ftw=%#x", cur.in.fcw, cur.in.fsw, cur.in.ftw);
    for (int i = 0; i < 8; i++) {
        uint64_t mm;
        uint16_t ex;
        memcpy(&mm, cur.in.st[i], 8);
        memcpy(&ex, cur.in.st[i] + 8, 2);
        printf("%s st%d=%04x:%016" PRIx64, i % 4 ? "" : "\n   ", i, ex, mm);
    }
    printf("\n");
    for (unsigned i = 0; i < cur.ninsns; i++) {
        printf("  %04x: ", cur.meta[i].off);
        for (unsigned k = 0; k < cur.meta[i].len; k++) printf("%02x ", cur.code[cur.meta[i].off + k]);
        printf("  (%s)\n", cur.meta[i].name);
    }
    sh->n = 1;
    sh->cases[0] = cur;
    run_native(sh);
    struct result *e = malloc(sizeof(*e));
    run_emu(&cur, e);
    compare(&cur, &sh->res[0], e, true, stdout);
    free(e);
}

/* ---------------- decoder length test ---------------- */

/* The host's instruction length: the bytes are placed so that their first k end at an
 * inaccessible page; the smallest k that does not fault fetching from that page is the length.
 * The trap flag stops execution after one instruction. */
#define LEN_PAGE 0x3f0000000000ull /* clear of ASan's allocator at 0x600000000000 */
#define LEN_BATCH 256

struct lenjob {
    uint8_t bytes[16];
    bool m32;      /* run and decode as 32-bit code */
    int host_len;  /* -1: unknown */
    int host_trap; /* trapno at the final attempt */
};

#define LEN_PAGE32 0x20000000ull /* 32-bit code needs its page below 4 GiB */

struct lenshared {
    unsigned n;
    struct lenjob job[LEN_BATCH];
};

static struct lenshared *lsh;
static int len_i, len_k;

static uint64_t len_base(void) { return lsh->job[len_i].m32 ? LEN_PAGE32 : LEN_PAGE; }

static void len_load(greg_t *g)
{
    for (int r = 0; r < 16; r++) g[greg_of[r]] = 0;
    memcpy((void *)(len_base() + 4096 - len_k), lsh->job[len_i].bytes, (size_t)len_k);

    g[REG_RIP] = (greg_t)(len_base() + 4096 - len_k);
    g[REG_CSGSFS] = (g[REG_CSGSFS] & ~(greg_t)0xffff) | (lsh->job[len_i].m32 ? 0x23 : 0x33);
    /* A random instruction may have loaded DS/ES; sigreturn leaves them alone. */
    __asm__ volatile("mov %0, %%ds\n\tmov %0, %%es" : : "r"((uint16_t)0x2b));
    g[REG_EFL] = (greg_t)((g[REG_EFL] & ~(greg_t)(STATUS_FLAGS | DF_FLAG | 0x40000)) | 0x100);
}

static void len_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)si;
    ucontext_t *uc = ucv;
    greg_t *g = uc->uc_mcontext.gregs;
    if (sig != SIGUSR1) {
        bool fetch_fault = g[REG_TRAPNO] == 14 && (uint64_t)g[REG_CR2] == len_base() + 4096 && (g[REG_ERR] & 16);
        if (fetch_fault && len_k < 15) {
            len_k++;
            len_load(g);
            return;
        }
        lsh->job[len_i].host_len = fetch_fault ? -1 : len_k;
        lsh->job[len_i].host_trap = (int)g[REG_TRAPNO];
        len_i++;
    }
    if (len_i >= (int)lsh->n) _exit(0);
    len_k = 1;
    len_load(g);
}

static int len_native(void)
{
    for (unsigned i = 0; i < lsh->n; i++) lsh->job[i].host_len = -2;
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        void *a = mmap((void *)LEN_PAGE, 8192, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (a != (void *)LEN_PAGE || mprotect((void *)(LEN_PAGE + 4096), 4096, PROT_NONE)) _exit(3);
        a = mmap((void *)LEN_PAGE32, 8192, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (a != (void *)LEN_PAGE32 || mprotect((void *)(LEN_PAGE32 + 4096), 4096, PROT_NONE)) _exit(3);
        static uint8_t altstack[65536];
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
        sigaltstack(&ss, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = len_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGUSR1};
        for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaction(sigs[i], &sa, NULL);
        alarm(30);
        len_i = 0;
        raise(SIGUSR1);
        _exit(4);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0) return -errno;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (getenv("VMKIT_DIFFTEST_DEBUG"))
            fprintf(stderr, "length child: %s %d at string %d\n", WIFSIGNALED(st) ? "signal" : "exit",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), len_i);
        return -EIO;
    }
    return 0;
}

/* Random bytes shaped like instructions: prefixes, REX, an opcode, then anything. */
static void len_gen(uint8_t *b)
{
    static const uint8_t pfx[] = {0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x3e, 0x26, 0x36};
    unsigned n = 0;
    unsigned np = rndn(4) == 0 ? rndn(4) : 0;
    for (unsigned i = 0; i < np; i++) b[n++] = pfx[rndn(sizeof(pfx))];
    if (rndn(3) == 0) b[n++] = (uint8_t)(0x40 | rndn(16));
    if (rndn(2)) b[n++] = 0x0f;
    while (n < 16) b[n++] = (uint8_t)rnd();
}

/* Bytes the host must not run: system calls, and what would change the child's TLS. */
static bool len_skip(const uint8_t *b)
{
    unsigned i = 0;
    bool p66 = false, pf3 = false;
    for (; i < 15; i++) {
        if (b[i] == 0x64 || b[i] == 0x65) return true;
        if (b[i] == 0x66) p66 = true;
        else if (b[i] == 0xf3) pf3 = true;
        else if (b[i] == 0x67 || b[i] == 0xf2 || b[i] == 0xf0 || b[i] == 0x2e || b[i] == 0x3e || b[i] == 0x26 || b[i] == 0x36) continue;
        else if ((b[i] & 0xf0) == 0x40) continue;
        else break;
        (void)pf3;
    }
    uint8_t o = b[i], o2 = b[i + 1 < 16 ? i + 1 : 15];
    if (o == 0xcd) return true;                                      /* int n (int 0x80: syscalls) */
    /* Segment loads: a null FS/GS clears the child's TLS base. */
    if (o == 0x8e || o == 0x07 || o == 0x17 || o == 0x1f || o == 0xc4 || o == 0xc5) return true;
    if (o == 0x0f && (o2 == 0xa1 || o2 == 0xa9 || o2 == 0xb2 || o2 == 0xb4 || o2 == 0xb5)) return true;
    if (o == 0x0f && (o2 == 0x05 || o2 == 0x34 || o2 == 0x07)) return true; /* syscall sysenter sysret */
    if (o == 0x0f && o2 == 0xae) return true;                        /* wrfsbase/wrgsbase and friends */
    /* sldt str smsw sgdt sidt: the host kernel emulates them under UMIP (and moves rip itself). */
    if (o == 0x0f && (o2 == 0x00 || o2 == 0x01)) return true;
    /* AMD honours 66 on near branches (rel16); the software CPU is an Intel. */
    if (p66 && (o == 0xe8 || o == 0xe9 || (o == 0x0f && (o2 & 0xf0) == 0x80) || (o >= 0x70 && o <= 0x7f) || o == 0xeb ||
                o == 0xc2 || o == 0xc3 || (o >= 0xe0 && o <= 0xe3) || o == 0xff))
        return true;
    return false;
}

static int run_lengths(uint64_t n, uint64_t seed)
{
    lsh = mmap(NULL, sizeof(*lsh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (lsh == MAP_FAILED) return 1;
    rng_state = seed * 0x9E3779B97F4A7C15ull + 777;
    uint64_t done = 0, compared = 0, emu_ud_host_ok = 0, bad = 0, retries = 0;
    while (done < n) {
        unsigned k = 0;
        while (k < LEN_BATCH && done + k < n) {
            len_gen(lsh->job[k].bytes);
            lsh->job[k].m32 = rndn(3) == 0 && m32_ok;
            if (len_skip(lsh->job[k].bytes)) continue;
            k++;
        }
        lsh->n = k;
        if (len_native()) {
            /* A random instruction hurt the child (it writes through random addresses): retry
             * with fresh bytes rather than guess. */
            if (++retries > 50 + done / LEN_BATCH / 10) {
                printf("emu_difftest: the length child keeps failing\n");
                return 1;
            }
            continue;
        }
        for (unsigned i = 0; i < k; i++) {
            struct lenjob *j = &lsh->job[i];
            struct emu_insn in;
            int rc = emu_decode(j->bytes, 15, j->m32 ? EMU_MODE_PROT32 : EMU_MODE_LONG64, &in);
            bool host_ud = j->host_trap == 6;
            bool ok = true;
            if (rc == 0) {
                compared++;
                if (host_ud || j->host_len != in.len) ok = false;
            } else if (host_ud) {
                compared++;
            } else {
                emu_ud_host_ok++; /* not implemented here, valid on the host: allowed */
            }
            if (!ok) {
                bad++;
                if (bad <= 10) {
                    printf("LENGTH MISMATCH (%s code): bytes", j->m32 ? "32-bit" : "64-bit");
                    for (int b = 0; b < 15; b++) printf(" %02x", j->bytes[b]);
                    printf(": host length %d trap %d, decoder %s length %u\n", j->host_len, j->host_trap,
                           rc == 0 ? "valid" : "#UD", in.len);
                }
            }
        }
        done += k;
    }
    printf("emu_difftest: %" PRIu64 " random byte strings, %" PRIu64 " compared (length and #UD), %" PRIu64
           " valid on the host but not implemented, %" PRIu64 " mismatches\n", done, compared, emu_ud_host_ok, bad);
    return bad ? 1 : 0;
}

/* ---------------- main ---------------- */

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : def;
}

int main(int argc, char **argv)
{
    uint64_t ncases = env_u64("VMKIT_DIFFTEST_CASES", 20000);
    uint64_t seed = env_u64("VMKIT_DIFFTEST_SEED", 1);
    uint64_t nlengths = env_u64("VMKIT_DIFFTEST_LENGTHS", 20000);
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cases") && i + 1 < argc) ncases = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--lengths") && i + 1 < argc) nlengths = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--verbose")) verbose = true;
        else {
            fprintf(stderr, "usage: %s [--cases N] [--lengths N] [--seed S] [--verbose]\n", argv[0]);
            return 2;
        }
    }
#if !defined(__x86_64__)
    printf("SKIP: the differential test needs an x86-64 host\n");
    return 77;
#endif
    host_features();
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* Probe 32-bit code: "inc eax; hlt" must stop at the hlt with eax incremented. */
    {
        struct tcase *p = &sh->cases[0];
        memset(p, 0, sizeof(*p));
        p->m32 = true;
        p->in.r[4] = RSP_VALUE;
        p->in.rip = CODE_ADDR;
        p->in.rflags = 0x202;
        p->code[0] = 0x40;
        p->code_len = 1;
        p->ninsns = 1;
        p->meta[0] = (struct insn_meta){.len = 1, .name = "inc eax"};
        sh->n = 1;
        int rc = run_native(sh);
        if (rc == -EADDRINUSE) {
            printf("SKIP: cannot map the test pages at %#llx in a child process\n", (unsigned long long)CODE_ADDR);
            return 77;
        }
        if (rc || sh->res[0].trapno != 13 || sh->res[0].out.rip != CODE_ADDR + 1 || (uint32_t)sh->res[0].out.r[0] != 1) {
            m32_ok = false;
            printf("emu_difftest: this host kernel does not run 32-bit code: 64-bit cases only\n");
        }
    }
    struct tcase *cases = malloc(sizeof(struct tcase) * BATCH);
    struct result *er = malloc(sizeof(struct result));
    uint64_t done = 0, failures = 0, faults = 0, unrepeatable = 0, by_vector[32] = {0};
    time_t t0 = time(NULL);
    while (done < ncases) {
        unsigned n = (unsigned)(ncases - done < BATCH ? ncases - done : BATCH);
        for (unsigned i = 0; i < n; i++) gen_case(&cases[i], seed + done + i);
        sh->n = n;
        memcpy(sh->cases, cases, sizeof(struct tcase) * n);
        int rc = run_native(sh);
        if (rc == -EADDRINUSE) {
            printf("SKIP: cannot map the test pages at %#llx in a child process\n", (unsigned long long)CODE_ADDR);
            return 77;
        }
        if (rc) {
            fprintf(stderr, "emu_difftest: the native child failed (%d) in batch at case %" PRIu64 "\n", rc, seed + done);
            return 1;
        }
        for (unsigned i = 0; i < n; i++) {
            struct result nat = sh->res[i];
            run_emu(&cases[i], er);
            if (nat.trapno != 13 || nat.out.rip != CODE_ADDR + cases[i].code_len) {
                faults++;
                by_vector[nat.trapno & 31]++;
            }
            if (compare(&cases[i], &nat, er, false, stdout)) {
                /* The host's x87 instruction/data pointers do not survive a preemption on AMD
                 * hosts (the kernel loads its own before restoring the state): a mismatch that
                 * the host does not repeat is counted, not failed. */
                if (!still_fails(&cases[i])) {
                    unrepeatable++;
                    printf("emu_difftest: case seed %" PRIu64 ": the host did not repeat its result; not counted\n",
                           seed + done + i);
                    continue;
                }
                failures++;
                printf("MISMATCH (case seed %" PRIu64 ") as first seen:\n", seed + done + i);
                compare(&cases[i], &nat, er, true, stdout);
                report(&cases[i], seed + done + i);
                if (!verbose && failures >= 3) {
                    printf("emu_difftest: stopping after 3 mismatches\n");
                    free(cases);
                    free(er);
                    return 1;
                }
            }
        }
        done += n;
    }
    printf("emu_difftest: %" PRIu64 " cases (seed %" PRIu64 "), %" PRIu64 " ended in a fault before the end, %" PRIu64
           " mismatches, %lds\n", done, seed, faults, failures, (long)(time(NULL) - t0));
    if (unrepeatable) printf("emu_difftest: %" PRIu64 " mismatches the host did not repeat (not counted)\n", unrepeatable);
    if (faults) {
        printf("emu_difftest: early ends by vector:");
        for (int v = 0; v < 32; v++)
            if (by_vector[v]) printf(" #%d:%" PRIu64, v, by_vector[v]);
        printf("\n");
    }
    free(cases);
    free(er);
    int lrc = nlengths ? run_lengths(nlengths, seed) : 0;
    return failures || lrc ? 1 : 0;
}
